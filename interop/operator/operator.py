#!/usr/bin/env python3
"""Drives simulated devices through Steward's Leshan-compatible REST API as an operator would.

Only the standard library and `requests` (installed by `interop/install-peers`). Each step
prints one line (`step <name>: ok ...`); the first failure prints `FAILED <step>: <why>` on
stderr and exits 1. Every request carries a timeout.

    python3 interop/operator/operator.py --base http://127.0.0.1:8080 --expect-devices 3 [--token T]

Steps: list, pick, read-object-instance, read-text, write, read-back, event-stream,
write-attributes, observe, notification, cancel-observe, cancel-unknown, execute-reboot,
re-registration, create, read-created, delete, read-deleted, delete-refused,
unknown-endpoint, create-on-instance.
"""

import argparse
import json
import queue
import sys
import threading
import time
from urllib.parse import quote

import requests

# Connect / read timeouts for one HTTP request (the device timeout is `timeout=` below).
HTTP_TIMEOUT = (5, 20)
# The device timeout asked of the server, in seconds.
DEVICE_TIMEOUT = 5
UTC_OFFSET = "+02:00"
BATTERY = "/3/0/9"


class StepFailed(Exception):
    def __init__(self, step, message):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


class Operator:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.step_name = "start"

    # --- plumbing -------------------------------------------------------------------------

    def step(self, name):
        self.step_name = name

    def ok(self, detail=""):
        print(f"step {self.step_name}: ok{(' ' + detail) if detail else ''}", flush=True)

    def fail(self, message):
        raise StepFailed(self.step_name, message)

    def check(self, condition, message):
        if not condition:
            self.fail(message)

    def url(self, path):
        return f"{self.base}{path}"

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        try:
            return self.session.request(method, self.url(path), **kwargs)
        except requests.RequestException as e:
            self.fail(f"{method} {path}: {e}")

    def device_call(self, method, path, expect_status, params=None, **kwargs):
        """A device operation: HTTP 200 with a Leshan Response whose status is `expect_status`."""
        params = dict(params or {})
        params.setdefault("timeout", DEVICE_TIMEOUT)
        r = self.request(method, path, params=params, **kwargs)
        self.check(
            r.status_code == 200,
            f"{method} {path}: HTTP {r.status_code} {r.text!r}, expected 200",
        )
        try:
            body = r.json()
        except ValueError:
            self.fail(f"{method} {path}: not JSON: {r.text!r}")
        self.check(
            isinstance(body, dict) and body.get("status") == expect_status,
            f"{method} {path}: status {body.get('status') if isinstance(body, dict) else body!r}"
            f", expected {expect_status}: {body!r}",
        )
        # `NAME(code)`: 2.xx codes (201..205) are successes.
        success = int(expect_status[expect_status.index("(") + 1 : -1]) < 300
        self.check(
            body.get("success") is success and body.get("failure") is (not success),
            f"{method} {path}: success/failure flags wrong: {body!r}",
        )
        return body


class EventListener:
    """`GET /api/event?ep=...` read in a thread; parsed events go to a queue."""

    def __init__(self, op, endpoint):
        self.op = op
        self.endpoint = endpoint
        self.events = queue.Queue()
        self.connected = threading.Event()
        self.error = None
        self.stopping = False
        self.response = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        if not self.connected.wait(10):
            self.op.fail(f"event stream did not open: {self.error or 'no answer in 10 s'}")
        if self.error:
            self.op.fail(f"event stream: {self.error}")

    def run(self):
        try:
            # Read timeout above the server's 10 s keep-alive.
            r = self.op.session.get(
                self.op.url(f"/api/event?ep={quote(self.endpoint)}"),
                headers={"Accept": "text/event-stream"},
                stream=True,
                timeout=(5, 30),
            )
            self.response = r
            if r.status_code != 200:
                self.error = f"HTTP {r.status_code} {r.text!r}"
                self.connected.set()
                return
            ctype = r.headers.get("Content-Type", "")
            if not ctype.startswith("text/event-stream"):
                self.error = f"Content-Type {ctype!r}, expected text/event-stream"
                self.connected.set()
                return
            self.connected.set()
            name, data = None, []
            for line in r.iter_lines(decode_unicode=True):
                if line is None:
                    continue
                if line == "":
                    if name is not None or data:
                        self.dispatch(name or "message", "\n".join(data))
                    name, data = None, []
                elif line.startswith(":"):
                    continue  # keep-alive comment
                elif line.startswith("event:"):
                    name = line[len("event:"):].strip()
                elif line.startswith("data:"):
                    data.append(line[len("data:"):].lstrip(" "))
        except Exception as e:  # noqa: BLE001 - reported by the waiting step
            if not self.stopping:
                self.error = f"{type(e).__name__}: {e}"
        finally:
            self.connected.set()

    def dispatch(self, name, raw):
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw
        self.events.put((name, data))

    def wait_for(self, want, seconds, what):
        """The first event `want(name, data)` accepts within `seconds`; fails otherwise."""
        deadline = time.monotonic() + seconds
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.op.fail(
                    f"no {what} within {seconds} s (stream error: {self.error}; "
                    f"events seen: {[n for n, _ in seen]})"
                )
            try:
                name, data = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.error and not self.thread.is_alive():
                    self.op.fail(f"event stream ended while waiting for {what}: {self.error}")
                continue
            seen.append((name, data))
            if want(name, data):
                return name, data

    def stop(self):
        self.stopping = True
        if self.response is not None:
            self.response.close()


def resource_value(node, rid=None):
    """The value of a singleResource node (optionally checking its id)."""
    if not isinstance(node, dict) or "value" not in node:
        return None
    if rid is not None and node.get("id") != rid:
        return None
    return node["value"]


def run(args):
    op = Operator(args.base, args.token)
    deadline_devices = time.monotonic() + args.wait

    # 1. list: wait until the expected devices are registered.
    op.step("list")
    clients = []
    while True:
        r = op.request("GET", "/api/clients")
        op.check(r.status_code == 200, f"GET /api/clients: HTTP {r.status_code} {r.text!r}")
        clients = r.json()
        op.check(isinstance(clients, list), f"GET /api/clients: not an array: {clients!r}")
        if len(clients) >= args.expect_devices:
            break
        if time.monotonic() > deadline_devices:
            op.fail(
                f"{len(clients)} devices listed after {args.wait} s, expected {args.expect_devices}"
            )
        time.sleep(0.5)
    endpoints = sorted(c.get("endpoint") for c in clients)
    op.check(all(endpoints), f"a registration without endpoint: {clients!r}")
    for c in clients:
        for key in ("registrationId", "endpoint", "lifetime", "objectLinks"):
            op.check(key in c, f"registration of {c.get('endpoint')} has no {key!r}: {c!r}")
    op.ok(f"{len(clients)} devices: {', '.join(endpoints)}")

    # 2. pick one and look at its registration.
    op.step("pick")
    ep = endpoints[0]
    base = f"/api/clients/{quote(ep)}"
    r = op.request("GET", base)
    op.check(r.status_code == 200, f"GET {base}: HTTP {r.status_code} {r.text!r}")
    registration = r.json()
    op.check(registration.get("endpoint") == ep, f"GET {base}: {registration!r}")
    links = [link.get("url") for link in registration.get("objectLinks", [])]
    op.check(
        any(u == "/3/0" or u == "/3" for u in links), f"{ep} does not announce /3: {links}"
    )
    op.ok(f"{ep} (registration {registration.get('registrationId')})")

    # 3. read the Device object instance.
    op.step("read-object-instance")
    body = op.device_call("GET", f"{base}/3/0", "CONTENT(205)")
    content = body.get("content") or {}
    op.check(
        content.get("kind") == "instance" and content.get("id") == 0,
        f"/3/0 content is not instance 0: {content!r}",
    )
    resources = {res.get("id"): res for res in content.get("resources", [])}
    manufacturer = resource_value(resources.get(0), 0)
    op.check(isinstance(manufacturer, str) and manufacturer, f"/3/0/0 missing: {resources!r}")
    op.ok(f"{len(resources)} resources, manufacturer {manufacturer!r}")

    # 4. read one resource in TEXT.
    op.step("read-text")
    body = op.device_call("GET", f"{base}/3/0/0", "CONTENT(205)", params={"format": "TEXT"})
    value = resource_value(body.get("content"), 0)
    op.check(value == manufacturer, f"/3/0/0 in TEXT is {body.get('content')!r}, expected {manufacturer!r}")
    op.ok(f"/3/0/0 = {value!r}")

    # 5. write the UTC offset ...
    op.step("write")
    node = {"id": 14, "kind": "singleResource", "type": "STRING", "value": UTC_OFFSET}
    op.device_call("PUT", f"{base}/3/0/14", "CHANGED(204)", json=node)
    op.ok(f"/3/0/14 := {UTC_OFFSET!r}")

    # 6. ... and read it back.
    op.step("read-back")
    body = op.device_call("GET", f"{base}/3/0/14", "CONTENT(205)", params={"format": "TEXT"})
    value = resource_value(body.get("content"), 14)
    op.check(value == UTC_OFFSET, f"/3/0/14 reads {body.get('content')!r}, expected {UTC_OFFSET!r}")
    op.ok(f"/3/0/14 = {value!r}")

    # 7. listen to the device's events.
    op.step("event-stream")
    events = EventListener(op, ep)
    events.start()
    op.ok(f"/api/event?ep={ep} open")

    try:
        # 8. notification attributes: at most 2 s between notifications.
        op.step("write-attributes")
        r = op.request("PUT", f"{base}{BATTERY}/attributes", params={"pmin": 1, "pmax": 2})
        op.check(r.status_code == 200, f"write-attributes: HTTP {r.status_code} {r.text!r}")
        status = r.json().get("status")
        op.check(status == "CHANGED(204)", f"write-attributes: {r.json()!r}")
        op.ok(f"{BATTERY} pmin=1 pmax=2")

        # 9. observe.
        op.step("observe")
        body = op.device_call("POST", f"{base}{BATTERY}/observe", "CONTENT(205)")
        level = resource_value(body.get("content"), 9)
        op.check(level is not None, f"observe answered without a value: {body!r}")
        op.ok(f"{BATTERY} = {level!r}")

        # 10. a notification arrives on the event stream.
        op.step("notification")
        _, data = events.wait_for(
            lambda n, d: n == "NOTIFICATION"
            and isinstance(d, dict)
            and d.get("ep") == ep
            and d.get("res") == BATTERY,
            20,
            f"NOTIFICATION for {BATTERY}",
        )
        value = resource_value(data.get("val"), 9)
        op.check(value is not None, f"NOTIFICATION without a value: {data!r}")
        op.ok(f"{BATTERY} = {value!r}")

        # 11. cancel the observation (actively: the device is told).
        op.step("cancel-observe")
        op.device_call(
            "DELETE", f"{base}{BATTERY}/observe", "CONTENT(205)", params={"active": ""}
        )
        op.ok(f"{BATTERY} no longer observed")

        # 12. cancelling it again: the server knows no such observation.
        op.step("cancel-unknown")
        r = op.request("DELETE", f"{base}{BATTERY}/observe", params={"active": ""})
        expected = f"no observation for path {BATTERY} for  client '{ep}'"
        op.check(
            r.status_code == 404 and r.text == expected,
            f"second cancel: HTTP {r.status_code} {r.text!r}, expected 404 {expected!r}",
        )
        op.ok(f"404 {r.text!r}")

        # 13. reboot.
        op.step("execute-reboot")
        op.device_call("POST", f"{base}/3/0/4", "CHANGED(204)")
        op.ok("/3/0/4 executed")

        # 14. the simulated device drops its registration state and registers afresh.
        op.step("re-registration")
        name, data = events.wait_for(
            lambda n, d: (n == "REGISTRATION" and isinstance(d, dict) and d.get("endpoint") == ep)
            or (
                n == "UPDATED"
                and isinstance(d, dict)
                and (d.get("registration") or {}).get("endpoint") == ep
            ),
            30,
            f"REGISTRATION or UPDATED of {ep}",
        )
        reg = data if name == "REGISTRATION" else data["registration"]
        r = op.request("GET", base)
        op.check(r.status_code == 200, f"GET {base} after reboot: HTTP {r.status_code} {r.text!r}")
        op.ok(f"{name} (registration {reg.get('registrationId')})")
    finally:
        events.stop()

    # 15. create a Server object instance (/1 is multi-instance); the device picks the id.
    op.step("create")
    instance = {
        "kind": "instance",
        "resources": [
            {"id": 0, "kind": "singleResource", "type": "INTEGER", "value": "99"},
            {"id": 1, "kind": "singleResource", "type": "INTEGER", "value": "300"},
            {"id": 6, "kind": "singleResource", "type": "BOOLEAN", "value": False},
            {"id": 7, "kind": "singleResource", "type": "STRING", "value": "U"},
        ],
    }
    body = op.device_call("POST", f"{base}/1", "CREATED(201)", json=instance)
    location = body.get("location")
    op.check(
        isinstance(location, str) and location.startswith("1/") and location[2:].isdigit(),
        f"create answered location {location!r}, expected '1/<id>' (no leading slash): {body!r}",
    )
    created = f"/{location}"
    op.ok(f"location {location!r}")

    op.step("read-created")
    body = op.device_call("GET", f"{base}{created}/0", "CONTENT(205)", params={"format": "TEXT"})
    value = resource_value(body.get("content"), 0)
    op.check(str(value) == "99", f"{created}/0 reads {body.get('content')!r}, expected 99")
    op.ok(f"{created}/0 = {value!r}")

    # 16. delete it.
    op.step("delete")
    op.device_call("DELETE", f"{base}{created}", "DELETED(202)")
    op.ok(f"{created} deleted")

    op.step("read-deleted")
    op.device_call("GET", f"{base}{created}", "NOT_FOUND(404)")
    op.ok(f"{created} is gone (NOT_FOUND(404))")

    # 17. the single-instance Device object cannot lose its instance.
    op.step("delete-refused")
    op.device_call("DELETE", f"{base}/3/0", "METHOD_NOT_ALLOWED(405)")
    op.ok("/3/0 refused with METHOD_NOT_ALLOWED(405)")

    # 18. error handling: unknown endpoint.
    op.step("unknown-endpoint")
    ghost = "no-such-device-operator"
    r = op.request("GET", f"/api/clients/{ghost}/3/0/0", params={"format": "TEXT", "timeout": 5})
    expected = f"No registered client with id '{ghost}'"
    op.check(
        r.status_code == 400 and r.text == expected,
        f"unknown endpoint: HTTP {r.status_code} {r.text!r}, expected 400 {expected!r}",
    )
    op.ok(f"400 {r.text!r}")

    # 19. error handling: Create on an instance path.
    op.step("create-on-instance")
    r = op.request("POST", f"{base}/3/0", json=instance)
    expected = "Invalid request: Invalid path /3/0: Create request must target an object"
    op.check(
        r.status_code == 400 and r.text == expected,
        f"create on /3/0: HTTP {r.status_code} {r.text!r}, expected 400 {expected!r}",
    )
    op.ok(f"400 {r.text!r}")

    print(f"operator: all steps passed against {ep}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="API base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--expect-devices", type=int, required=True, help="devices to wait for")
    parser.add_argument("--token", help="bearer token, when the API requires one")
    parser.add_argument(
        "--wait", type=float, default=60, help="seconds to wait for the devices (default 60)"
    )
    args = parser.parse_args()
    try:
        run(args)
    except StepFailed as e:
        print(f"FAILED {e.step}: {e.message}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
