//! EST-coaps and the revocation service against tools we did not write: the `openssl` CLI makes
//! the CSR and judges everything Steward hands out (certificate chain, OCSP responses, CRLs),
//! libcoap's `coap-client-openssl` speaks EST-coaps and CoAP OCSP over DTLS with a factory
//! certificate, and `curl` fetches over HTTP what `openssl ocsp` cannot.
//!
//! Each test runs the real `steward` runtime in-process on a data directory prepared offline:
//! the Steward CA, a manufacturer CA (`ca/manufacturers/acme.pem`), and the allow-list entry for
//! [`DEVICE`]. The server is shut down by the test even when an assertion fails (the body runs
//! in its own task; see [`with_server`]).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509NameBuilder, X509ReqBuilder};
use steward::config::Config;
use steward::pki::{
    CA_DIR, ISSUING_CERT_FILE, MANUFACTURERS_DIR, PkiService, PkiSettings, ROOT_CERT_FILE,
};
use steward::store::SledStore;
use steward_pki::ca::{Ca, CaNames, IssueParams, Serial};
use steward_pki::profile::Profile;
use steward_pki::records::{PkiStore, RevocationReason};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

/// The device the manufacturer reported as produced (on the allow-list).
const DEVICE: &str = "dev-interop-1";
/// A device with a valid factory certificate that is not on the allow-list.
const STRANGER: &str = "dev-stranger-9";
/// A child process that runs longer than this is killed and the test fails: a hang must not
/// block CI. Generous, because two cores are shared with other builds.
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// libcoap's own give-up time (`-B`), below [`CHILD_LIMIT`] so libcoap reports first.
const COAP_BREAK_SECS: &str = "30";

// ---------------------------------------------------------------------------------------------
// External processes.

/// Why an external tool could not be run to completion.
#[derive(Debug)]
enum ToolError {
    Spawn {
        program: String,
        source: std::io::Error,
    },
    Io {
        program: String,
        source: std::io::Error,
    },
    TimedOut {
        program: String,
    },
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::Spawn { program, source } => write!(
                f,
                "cannot start {program}: {source} (scripts/setup installs the interop peers)"
            ),
            ToolError::Io { program, source } => write!(f, "{program}: {source}"),
            ToolError::TimedOut { program } => {
                write!(f, "{program} did not finish within {CHILD_LIMIT:?}; killed")
            }
        }
    }
}

/// Runs `program` with a time limit. The child is always waited for: on overrun it is killed
/// and reaped before the error is returned.
async fn run_tool(program: &str, args: &[&str]) -> Result<Output, ToolError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ToolError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let finished = tokio::time::timeout(CHILD_LIMIT, async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (_, _, status) = tokio::try_join!(
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait()
        )?;
        Ok::<_, std::io::Error>(Output {
            status,
            stdout: out,
            stderr: err,
        })
    })
    .await;
    match finished {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(source)) => {
            let _ = child.kill().await;
            Err(ToolError::Io {
                program: program.to_owned(),
                source,
            })
        }
        Err(_) => {
            // `kill` also waits, so no zombie outlives the test.
            let _ = child.kill().await;
            Err(ToolError::TimedOut {
                program: program.to_owned(),
            })
        }
    }
}

/// stdout and stderr together, for assertions and failure messages.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a tool that must succeed; panics with its output otherwise.
async fn tool_ok(program: &str, args: &[&str]) -> Output {
    let out = run_tool(program, args)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        text(&out)
    );
    out
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

// ---------------------------------------------------------------------------------------------
// The data directory, prepared offline, and the files the external tools read.

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A factory certificate and its key as PEM files (what libcoap's `-c`/`-j` take).
struct KeyPairFiles {
    cert: PathBuf,
    key: PathBuf,
}

struct Setup {
    /// `DATA_DIR` of the server.
    data: TempDir,
    /// PEM/DER files handed to and produced by the external tools.
    files: TempDir,
    /// The manufacturer CA lives outside the data directory, as it would at the factory.
    _mfr_dir: TempDir,
    mfr: Ca,
}

impl Setup {
    /// Creates the Steward CA, installs the manufacturer CA and allow-lists [`DEVICE`]. The
    /// store is closed again before returning: sled locks the directory, and the runtime opens
    /// it next.
    fn new() -> Setup {
        let data = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let mfr_dir = tempfile::tempdir().unwrap();
        let names = CaNames {
            organization: Some("Acme".into()),
            root_cn: "Acme Root".into(),
            issuing_cn: "Acme Devices CA".into(),
            ..CaNames::default()
        };
        // A day in the past, so that factory certificates are valid now whatever the backdating.
        let mfr = Ca::init(&mfr_dir.path().join("ca"), &names, unix_now() - 86_400).unwrap();
        let manufacturers = data.path().join(CA_DIR).join(MANUFACTURERS_DIR);
        std::fs::create_dir_all(&manufacturers).unwrap();
        std::fs::write(
            manufacturers.join("acme.pem"),
            mfr.issuing_cert().to_pem().unwrap(),
        )
        .unwrap();
        {
            let store = Arc::new(SledStore::open(data.path()).unwrap());
            store.allow_list_put(DEVICE).unwrap();
            let pki = PkiService::init_if_missing(
                data.path(),
                Arc::clone(&store),
                PkiSettings::default(),
            )
            .unwrap();
            drop(pki);
            // The last reference: sled flushes and releases the directory lock here.
            assert_eq!(Arc::strong_count(&store), 1, "the store is still held");
        }
        let setup = Setup {
            data,
            files,
            _mfr_dir: mfr_dir,
            mfr,
        };
        let ca_dir = setup.data.path().join(CA_DIR);
        std::fs::copy(ca_dir.join(ROOT_CERT_FILE), setup.file("root.pem")).unwrap();
        std::fs::copy(ca_dir.join(ISSUING_CERT_FILE), setup.file("issuing.pem")).unwrap();
        std::fs::write(
            setup.file("mfr-issuing.pem"),
            setup.mfr.issuing_cert().to_pem().unwrap(),
        )
        .unwrap();
        setup
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// A certificate for `CN=<cn>` from the manufacturer's issuing CA, with `serial`, written
    /// as `<name>.pem` and `<name>.key`.
    fn manufacturer_cert(&self, cn: &str, serial: Serial, name: &str) -> KeyPairFiles {
        let key = p256();
        let mut subject = X509NameBuilder::new().unwrap();
        subject.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let subject = subject.build();
        let mut req = X509ReqBuilder::new().unwrap();
        req.set_version(0).unwrap();
        req.set_subject_name(&subject).unwrap();
        req.set_pubkey(&key).unwrap();
        req.sign(&key, MessageDigest::sha256()).unwrap();
        let csr =
            steward_pki::csr::Csr::from_der(&req.build().to_der().unwrap(), Default::default())
                .unwrap();
        let issued = self
            .mfr
            .issue(
                &csr,
                &Profile::device(),
                IssueParams::new(serial, unix_now()),
            )
            .unwrap();
        let files = KeyPairFiles {
            cert: self.file(&format!("{name}.pem")),
            key: self.file(&format!("{name}.key")),
        };
        std::fs::write(
            &files.cert,
            X509::from_der(&issued.der).unwrap().to_pem().unwrap(),
        )
        .unwrap();
        std::fs::write(&files.key, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        files
    }

    /// The factory certificate of `device_id`.
    fn factory_cert(&self, device_id: &str) -> KeyPairFiles {
        self.manufacturer_cert(
            device_id,
            Serial::random().unwrap(),
            &format!("factory-{device_id}"),
        )
    }
}

/// What a test body gets of the running server. Owned, so the body can run in its own task.
struct Ctx {
    setup: Arc<Setup>,
    pki: PkiService,
    bs_coaps: SocketAddr,
    http: SocketAddr,
}

/// Starts the runtime on the prepared data directory, runs `body`, and shuts the server down
/// whether or not the body panicked; the panic is re-raised afterwards.
async fn with_server<F, Fut>(setup: Setup, body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let setup = Arc::new(setup);
    let config = Config::ephemeral(setup.data.path().to_path_buf());
    let server = steward::runtime::start(&config).await.unwrap();
    let ctx = Ctx {
        setup: Arc::clone(&setup),
        pki: server.pki().expect("the CA was prepared").clone(),
        bs_coaps: server.bs_coaps_addr().expect("bootstrap listener"),
        http: server.http_addr().expect("HTTP listener"),
    };
    assert!(ctx.bs_coaps.ip().is_loopback() && ctx.http.ip().is_loopback());
    let outcome = tokio::spawn(body(ctx)).await;
    server.shutdown().await.unwrap();
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test body did not finish: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The steps, each with an external tool.

impl Ctx {
    fn file(&self, name: &str) -> PathBuf {
        self.setup.file(name)
    }

    fn coaps_url(&self, path: &str) -> String {
        format!("coaps://{}{path}", self.bs_coaps)
    }

    fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `coap-client-openssl` over DTLS with `client` as its certificate, trusting the Steward
    /// root to authenticate the server. `extra` goes before the URL; the response body is
    /// written to `out` (libcoap reassembles Block2 itself).
    async fn coap(&self, client: &KeyPairFiles, extra: &[&str], path: &str, out: &Path) -> Output {
        let root = self.file("root.pem");
        let url = self.coaps_url(path);
        let mut args = vec![
            "-B",
            COAP_BREAK_SECS,
            "-c",
            s(&client.cert),
            "-j",
            s(&client.key),
            "-R",
            s(&root),
            "-o",
            s(out),
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        run_tool("coap-client-openssl", &args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A P-256 key and a DER CSR for `CN=<cn>` made by `openssl req`.
    async fn openssl_csr(&self, cn: &str, name: &str) -> (PathBuf, PathBuf) {
        let key = self.file(&format!("{name}.key"));
        let csr = self.file(&format!("{name}.csr.der"));
        let subj = format!("/CN={cn}");
        tool_ok(
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &subj,
                "-keyout",
                s(&key),
                "-outform",
                "DER",
                "-out",
                s(&csr),
            ],
        )
        .await;
        (key, csr)
    }

    /// EST `/sen` with libcoap: the CSR from `openssl req`, Content-Format 286, Accept 287,
    /// over DTLS authenticated by `factory`. Returns libcoap's output and the response body
    /// (empty if there was none).
    async fn enroll(
        &self,
        factory: &KeyPairFiles,
        cn: &str,
        name: &str,
    ) -> (Output, Vec<u8>, PathBuf) {
        let (key, csr) = self.openssl_csr(cn, name).await;
        let out = self.file(&format!("{name}.crt.der"));
        let output = self
            .coap(
                factory,
                &["-m", "post", "-t", "286", "-A", "287", "-f", s(&csr)],
                "/.well-known/est/sen",
                &out,
            )
            .await;
        let body = std::fs::read(&out).unwrap_or_default();
        (output, body, key)
    }

    /// Enrols [`DEVICE`] and returns its operational certificate and key as PEM files, after
    /// checking only that one came back (the enrolment test checks it in full).
    async fn enrolled_device(&self) -> KeyPairFiles {
        let factory = self.setup.factory_cert(DEVICE);
        let (output, body, key) = self.enroll(&factory, DEVICE, "op").await;
        assert!(
            !body.is_empty(),
            "no certificate from /sen: {}",
            text(&output)
        );
        let cert = self.file("op.pem");
        std::fs::write(&cert, X509::from_der(&body).unwrap().to_pem().unwrap()).unwrap();
        KeyPairFiles { cert, key }
    }

    /// `openssl x509 -noout -serial` of a PEM certificate: the serial as OpenSSL prints it,
    /// so that it can be looked for in `openssl crl -text` without our formatting in between.
    async fn openssl_serial(&self, cert: &Path) -> String {
        let out = tool_ok("openssl", &["x509", "-in", s(cert), "-noout", "-serial"]).await;
        let line = String::from_utf8(out.stdout).unwrap();
        line.trim()
            .strip_prefix("serial=")
            .unwrap_or_else(|| panic!("unexpected `openssl x509 -serial` output {line:?}"))
            .to_owned()
    }

    /// `openssl ocsp` against the HTTP responder for `cert` issued by `issuer`, the response
    /// verified against the Steward root. `extra` adds options.
    async fn openssl_ocsp_http(&self, issuer: &Path, cert: &Path, extra: &[&str]) -> Output {
        let root = self.file("root.pem");
        let url = self.http_url("/ocsp");
        let mut args = vec![
            "ocsp",
            "-issuer",
            s(issuer),
            "-cert",
            s(cert),
            "-url",
            &url,
            "-CAfile",
            s(&root),
            "-resp_text",
        ];
        args.extend_from_slice(extra);
        // Not `tool_ok`: a verification failure exits 1 and the caller asserts on the text.
        run_tool("openssl", &args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `openssl ocsp -respin` on a response fetched some other way, checked against the request
    /// it answers (`-reqin`, so the nonce is compared) and verified against the Steward root.
    /// No `-cert`: with it openssl builds a fresh request with a new nonce and reports a
    /// mismatch. Returns the `-resp_text` output.
    async fn openssl_ocsp_respin(&self, req: &Path, resp: &Path) -> String {
        let out = run_tool(
            "openssl",
            &[
                "ocsp",
                "-respin",
                s(resp),
                "-reqin",
                s(req),
                "-issuer",
                s(&self.file("issuing.pem")),
                "-CAfile",
                s(&self.file("root.pem")),
                "-resp_text",
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let t = text(&out);
        assert!(out.status.success(), "openssl ocsp -respin: {t}");
        assert!(t.contains("Response verify OK"), "{t}");
        assert!(!t.contains("Nonce Verify error"), "{t}");
        t
    }

    /// Fetches `/crl` over HTTP with curl (DER).
    async fn curl_crl(&self, out: &Path) {
        let url = self.http_url("/crl");
        tool_ok(
            "curl",
            &[
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "30",
                "-o",
                s(out),
                &url,
            ],
        )
        .await;
    }

    /// Checks a DER CRL with `openssl crl`: its signature verifies against the Steward CA
    /// chain; returns its `-text` form.
    async fn openssl_crl_checked(&self, crl_der: &Path) -> String {
        let chain = self.file("ca-chain.pem");
        std::fs::write(
            &chain,
            [
                std::fs::read(self.file("issuing.pem")).unwrap(),
                std::fs::read(self.file("root.pem")).unwrap(),
            ]
            .concat(),
        )
        .unwrap();
        let out = tool_ok(
            "openssl",
            &[
                "crl",
                "-inform",
                "DER",
                "-in",
                s(crl_der),
                "-CAfile",
                s(&chain),
                "-noout",
            ],
        )
        .await;
        assert!(
            text(&out).contains("verify OK"),
            "CRL signature: {}",
            text(&out)
        );
        let out = tool_ok(
            "openssl",
            &[
                "crl",
                "-inform",
                "DER",
                "-in",
                s(crl_der),
                "-noout",
                "-text",
            ],
        )
        .await;
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("Issuer: CN = Steward Issuing CA"),
            "CRL issuer: {text}"
        );
        text
    }

    /// `openssl verify` of `cert` with the CRL in `crl_der` (converted to PEM by `openssl crl`).
    async fn openssl_verify_with_crl(&self, cert: &Path, crl_der: &Path) -> Output {
        let crl_pem = crl_der.with_extension("pem");
        tool_ok(
            "openssl",
            &[
                "crl",
                "-inform",
                "DER",
                "-in",
                s(crl_der),
                "-out",
                s(&crl_pem),
            ],
        )
        .await;
        run_tool(
            "openssl",
            &[
                "verify",
                "-crl_check",
                "-CRLfile",
                s(&crl_pem),
                "-CAfile",
                s(&self.file("root.pem")),
                "-untrusted",
                s(&self.file("issuing.pem")),
                s(cert),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The records of certificates issued to anything but the server itself.
    fn device_records(&self) -> Vec<steward_pki::records::IssuedRecord> {
        self.pki
            .store()
            .all_issued()
            .unwrap()
            .into_iter()
            .filter(|r| r.endpoint != steward::runtime::SERVER_CN)
            .collect()
    }
}

/// What libcoap (through OpenSSL) logs when the server rejects its certificate in the DTLS
/// handshake: the TLS alert description, the same in every OpenSSL version.
const HANDSHAKE_REFUSED: &str = "alert bad certificate";

/// Whether libcoap's request was refused, at the handshake or with 4.03. libcoap 4.3 exits 0
/// either way, so its exit status says nothing.
fn refused(out: &Output) -> bool {
    let t = text(out);
    t.contains(HANDSHAKE_REFUSED) || t.lines().any(|l| l.trim() == "4.03")
}

fn count_certs(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

// ---------------------------------------------------------------------------------------------
// 1. EST-coaps with libcoap and openssl.

/// `/crts` and `/sen` with libcoap over DTLS, authenticated by a factory certificate; the
/// issued certificate is checked by `openssl verify` and `openssl x509`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_enrols_with_factory_certificate_and_openssl_verifies() {
    with_server(Setup::new(), |ctx| async move {
        let factory = ctx.setup.factory_cert(DEVICE);

        // GET /crts, certs-only (281): the CA chain, which openssl reads as PKCS#7.
        let crts = ctx.file("crts.p7.der");
        let out = ctx
            .coap(
                &factory,
                &["-m", "get", "-A", "281"],
                "/.well-known/est/crts",
                &crts,
            )
            .await;
        assert!(crts.exists(), "no /crts body: {}", text(&out));
        let crts_pem = ctx.file("crts.pem");
        tool_ok(
            "openssl",
            &[
                "pkcs7",
                "-inform",
                "DER",
                "-in",
                s(&crts),
                "-print_certs",
                "-out",
                s(&crts_pem),
            ],
        )
        .await;
        let chain = std::fs::read_to_string(&crts_pem).unwrap();
        assert_eq!(count_certs(&chain), 2, "/crts: {chain}");
        // certificates is a DER SET OF, so its order is the encoder's, not the chain's.
        let mut from_crts: Vec<Vec<u8>> = X509::stack_from_pem(chain.as_bytes())
            .unwrap()
            .iter()
            .map(|c| c.to_der().unwrap())
            .collect();
        from_crts.sort();
        let mut ours = ctx.pki.ca_chain_der();
        ours.sort();
        assert_eq!(from_crts, ours, "/crts is not the issuing CA and the root");

        // POST /sen: CSR from `openssl req`, certificate (287) back.
        let (output, body, key) = ctx.enroll(&factory, DEVICE, "dev").await;
        assert!(
            !body.is_empty(),
            "no certificate from /sen: {}",
            text(&output)
        );
        let leaf = ctx.file("dev.pem");
        tool_ok(
            "openssl",
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                s(&ctx.file("dev.crt.der")),
                "-out",
                s(&leaf),
            ],
        )
        .await;

        // openssl accepts the chain: root trusted, the issuing CA from /crts as untrusted.
        let out = tool_ok(
            "openssl",
            &[
                "verify",
                "-CAfile",
                s(&ctx.file("root.pem")),
                "-untrusted",
                s(&crts_pem),
                "-purpose",
                "sslclient",
                s(&leaf),
            ],
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{}: OK", leaf.display())
        );

        let out = tool_ok("openssl", &["x509", "-in", s(&leaf), "-noout", "-subject"]).await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("subject=CN = {DEVICE}")
        );
        // The certificate is for the key `openssl req` generated, not some other.
        let cert_key = tool_ok("openssl", &["x509", "-in", s(&leaf), "-noout", "-pubkey"]).await;
        let csr_key = tool_ok("openssl", &["pkey", "-in", s(&key), "-pubout"]).await;
        assert_eq!(
            cert_key.stdout, csr_key.stdout,
            "certified key differs from the CSR's"
        );

        // Recorded: exactly this certificate, for this device.
        let records = ctx.pki.issued_for_endpoint(DEVICE).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].der, body);
        assert!(records[0].revoked.is_none());

        // Factory credentials enrol once: the same factory certificate asking again, while the
        // first operational certificate is valid, is refused with 4.03 and nothing is issued.
        let (output, body, _) = ctx.enroll(&factory, DEVICE, "dev-again").await;
        assert!(
            body.is_empty(),
            "second certificate issued: {}",
            text(&output)
        );
        assert!(
            text(&output).lines().any(|l| l.trim() == "4.03"),
            "{}",
            text(&output)
        );
        assert_eq!(ctx.pki.issued_for_endpoint(DEVICE).unwrap().len(), 1);
    })
    .await;
}

/// A factory certificate of the right manufacturer for a device that is not on the allow-list
/// gets no certificate, whichever way the server refuses (handshake or 4.03).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_device_not_on_allow_list_gets_nothing() {
    with_server(Setup::new(), |ctx| async move {
        let stranger = ctx.setup.factory_cert(STRANGER);
        let (output, body, _) = ctx.enroll(&stranger, STRANGER, "stranger").await;
        assert!(
            body.is_empty(),
            "a certificate was returned: {}",
            text(&output)
        );
        assert!(refused(&output), "{}", text(&output));
        assert!(ctx.pki.issued_for_endpoint(STRANGER).unwrap().is_empty());
        assert!(ctx.device_records().is_empty(), "something was issued");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. OCSP over HTTP with `openssl ocsp`, and the CRL with `openssl crl`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ocsp_and_crl_over_http_follow_revocation() {
    with_server(Setup::new(), |ctx| async move {
        let op = ctx.enrolled_device().await;
        let issuing = ctx.file("issuing.pem");
        let serial_text = ctx.openssl_serial(&op.cert).await;
        let cert_label = format!("{}: ", op.cert.display());

        // Before: good, signed by the issuing CA, nonce echoed.
        let out = ctx.openssl_ocsp_http(&issuing, &op.cert, &[]).await;
        let t = text(&out);
        assert!(out.status.success(), "openssl ocsp: {t}");
        assert!(t.contains("Response verify OK"), "{t}");
        assert!(t.contains(&format!("{cert_label}good")), "{t}");
        assert!(t.contains("OCSP Nonce"), "nonce not echoed: {t}");
        assert!(!t.contains("WARNING"), "{t}");

        // The CRL before: signed, empty, and `openssl verify -crl_check` accepts the device.
        let crl0 = ctx.file("crl0.der");
        ctx.curl_crl(&crl0).await;
        let crl_text = ctx.openssl_crl_checked(&crl0).await;
        assert!(crl_text.contains("No Revoked Certificates."), "{crl_text}");
        let out = ctx.openssl_verify_with_crl(&op.cert, &crl0).await;
        assert!(
            out.status.success(),
            "verify with the empty CRL: {}",
            text(&out)
        );

        // Revoke through the running server's CA service.
        let record = ctx.pki.issued_for_endpoint(DEVICE).unwrap().remove(0);
        assert!(
            ctx.pki
                .revoke_serial(
                    &record.serial,
                    RevocationReason::KeyCompromise,
                    SystemTime::now()
                )
                .unwrap()
        );

        // After: revoked, with the reason.
        let out = ctx.openssl_ocsp_http(&issuing, &op.cert, &[]).await;
        let t = text(&out);
        assert!(out.status.success(), "openssl ocsp: {t}");
        assert!(t.contains("Response verify OK"), "{t}");
        assert!(t.contains(&format!("{cert_label}revoked")), "{t}");
        assert!(t.contains("Reason: keyCompromise"), "{t}");

        // The CRL after: lists the serial (as openssl prints it) with the reason, and
        // `openssl verify -crl_check` now refuses the certificate.
        let crl1 = ctx.file("crl1.der");
        ctx.curl_crl(&crl1).await;
        let crl_text = ctx.openssl_crl_checked(&crl1).await;
        assert!(
            crl_text.contains(&format!("Serial Number: {serial_text}")),
            "serial {serial_text} not in the CRL: {crl_text}"
        );
        assert!(crl_text.contains("Key Compromise"), "{crl_text}");
        let out = ctx.openssl_verify_with_crl(&op.cert, &crl1).await;
        assert!(
            !out.status.success(),
            "revoked certificate verified: {}",
            text(&out)
        );
        assert!(text(&out).contains("certificate revoked"), "{}", text(&out));

        // A certificate of another CA with the very same serial: the CertID's issuer hashes
        // are not ours, so the answer must be `unknown`, never this serial's status. Our
        // issuing CA is not an authorised responder for another CA's certificates (RFC 6960
        // §4.2.2.2), so openssl rightly will not chain-verify the response; -VAfile trusts the
        // signer explicitly, which still checks the signature.
        let foreign = ctx
            .setup
            .manufacturer_cert(DEVICE, record.serial.clone(), "foreign");
        assert_eq!(ctx.openssl_serial(&foreign.cert).await, serial_text);
        let out = ctx
            .openssl_ocsp_http(
                &ctx.file("mfr-issuing.pem"),
                &foreign.cert,
                &["-VAfile", s(&issuing)],
            )
            .await;
        let t = text(&out);
        assert!(out.status.success(), "openssl ocsp: {t}");
        assert!(t.contains("Response verify OK"), "{t}");
        assert!(
            t.contains(&format!("{}: unknown", foreign.cert.display())),
            "{t}"
        );
    })
    .await;
}

/// `GET /ocsp/{base64}` (RFC 6960 App. A.1): the request made by `openssl ocsp -reqout`,
/// base64 by `openssl base64`, URL-encoded, fetched with curl; `openssl ocsp -respin` accepts
/// the answer. The request is remade (new nonce) until its base64 holds a `/`, so that the
/// percent-encoded slash, the case a router can get wrong, is always exercised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ocsp_request_over_http_get() {
    with_server(Setup::new(), |ctx| async move {
        let op = ctx.enrolled_device().await;
        let issuing = ctx.file("issuing.pem");
        let req = ctx.file("get-req.der");
        let mut b64 = String::new();
        // Each base64 character is `/` with probability 1/64 and there are ~100 of them, so
        // 32 attempts all without one has probability ~0.2^32.
        for _ in 0..32 {
            tool_ok(
                "openssl",
                &[
                    "ocsp",
                    "-issuer",
                    s(&issuing),
                    "-cert",
                    s(&op.cert),
                    "-reqout",
                    s(&req),
                ],
            )
            .await;
            let out = tool_ok("openssl", &["base64", "-A", "-in", s(&req)]).await;
            b64 = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            if b64.contains('/') {
                break;
            }
        }
        assert!(b64.contains('/'), "no request with a `/` in its base64");
        let encoded: String = b64
            .chars()
            .map(|c| match c {
                '+' => "%2B".to_owned(),
                '/' => "%2F".to_owned(),
                '=' => "%3D".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let resp = ctx.file("get-resp.der");
        let url = ctx.http_url(&format!("/ocsp/{encoded}"));
        tool_ok(
            "curl",
            &[
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "30",
                "-o",
                s(&resp),
                &url,
            ],
        )
        .await;
        let t = ctx.openssl_ocsp_respin(&req, &resp).await;
        let serial_text = ctx.openssl_serial(&op.cert).await;
        assert!(t.contains(&format!("Serial Number: {serial_text}")), "{t}");
        assert!(t.contains("Cert Status: good"), "{t}");
    })
    .await;
}

/// `GET /ocsp/{base64}` with a request whose base64 ends in `/` (no padding): the
/// percent-decoded path parameter legitimately ends with a slash, which must not be taken for
/// a trailing path separator. The request asks about a serial this CA never issued (the only
/// way to choose the request's bytes with the CLI), so the signed answer is `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ocsp_get_request_with_base64_ending_in_slash() {
    with_server(Setup::new(), |ctx| async move {
        let issuing = ctx.file("issuing.pem");
        let req = ctx.file("slash-req.der");
        // Without a nonce the request is 67 bytes plus the serial's length, and its base64
        // ends with the serial's last byte's low six bits: a 2-byte serial ending in 0x3F
        // gives 69 bytes (no padding) ending in `/`. openssl, not this arithmetic, decides.
        let mut b64 = String::new();
        for serial in ["0x013F", "0x017F", "0x01BF", "0x01FF"] {
            tool_ok(
                "openssl",
                &[
                    "ocsp",
                    "-issuer",
                    s(&issuing),
                    "-serial",
                    serial,
                    "-no_nonce",
                    "-reqout",
                    s(&req),
                ],
            )
            .await;
            let out = tool_ok("openssl", &["base64", "-A", "-in", s(&req)]).await;
            b64 = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            if b64.ends_with('/') {
                break;
            }
        }
        assert!(
            b64.ends_with('/'),
            "no request whose base64 ends in `/`: {b64}"
        );
        // The same request by POST first: the answer every GET must match in substance.
        let posted = ctx.file("slash-post-resp.der");
        let url = ctx.http_url("/ocsp");
        let data = format!("@{}", s(&req));
        tool_ok(
            "curl",
            &[
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "30",
                "-H",
                "Content-Type: application/ocsp-request",
                "--data-binary",
                &data,
                "-o",
                s(&posted),
                &url,
            ],
        )
        .await;
        let t = ctx.openssl_ocsp_respin(&req, &posted).await;
        assert!(t.contains("Cert Status: unknown"), "{t}");

        let encoded = b64.replace('+', "%2B").replace('/', "%2F");
        let resp = ctx.file("slash-resp.der");
        let url = ctx.http_url(&format!("/ocsp/{encoded}"));
        let out = run_tool(
            "curl",
            &[
                "--silent",
                "--show-error",
                "--max-time",
                "30",
                "--write-out",
                "%{http_code}",
                "-o",
                s(&resp),
                &url,
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            status,
            "200",
            "GET {url}: {}",
            String::from_utf8_lossy(&std::fs::read(&resp).unwrap_or_default())
        );
        let t = ctx.openssl_ocsp_respin(&req, &resp).await;
        assert!(t.contains("Cert Status: unknown"), "{t}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. OCSP and the CRL over CoAP on the bootstrap port.

/// `POST /ocsp` and `GET /crl` with libcoap over DTLS; `openssl ocsp -respin` and `openssl crl`
/// accept what comes back. First with the device's operational certificate as DTLS client
/// certificate (the bootstrap port accepts our unrevoked certificates); after revocation that
/// certificate no longer gets a session, and the factory certificate asks instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_ocsp_and_crl_over_coaps() {
    with_server(Setup::new(), |ctx| async move {
        let op = ctx.enrolled_device().await;
        let factory = ctx.setup.factory_cert(DEVICE);
        let issuing = ctx.file("issuing.pem");
        let req = ctx.file("coap-req.der");
        tool_ok(
            "openssl",
            &[
                "ocsp",
                "-issuer",
                s(&issuing),
                "-cert",
                s(&op.cert),
                "-reqout",
                s(&req),
            ],
        )
        .await;

        let serial_text = ctx.openssl_serial(&op.cert).await;
        let post_ocsp = ["-m", "post", "-f", s(&req)];

        let resp = ctx.file("coap-resp0.der");
        let out = ctx.coap(&op, &post_ocsp, "/ocsp", &resp).await;
        assert!(resp.exists(), "no OCSP response over CoAP: {}", text(&out));
        let t = ctx.openssl_ocsp_respin(&req, &resp).await;
        assert!(t.contains(&format!("Serial Number: {serial_text}")), "{t}");
        assert!(t.contains("Cert Status: good"), "{t}");

        let crl = ctx.file("coap-crl0.der");
        let out = ctx.coap(&op, &["-m", "get"], "/crl", &crl).await;
        assert!(crl.exists(), "no CRL over CoAP: {}", text(&out));
        let crl_text = ctx.openssl_crl_checked(&crl).await;
        assert!(crl_text.contains("No Revoked Certificates."), "{crl_text}");

        assert_eq!(
            ctx.pki
                .revoke_endpoint(DEVICE, RevocationReason::Superseded, SystemTime::now())
                .unwrap(),
            1
        );

        // The revoked certificate gets no answer at all on the bootstrap port.
        let refused = ctx.file("coap-resp-refused.der");
        let out = ctx.coap(&op, &post_ocsp, "/ocsp", &refused).await;
        assert!(
            std::fs::read(&refused).unwrap_or_default().is_empty(),
            "a revoked certificate was served: {}",
            text(&out)
        );
        assert!(text(&out).contains(HANDSHAKE_REFUSED), "{}", text(&out));

        let resp = ctx.file("coap-resp1.der");
        let out = ctx.coap(&factory, &post_ocsp, "/ocsp", &resp).await;
        assert!(resp.exists(), "no OCSP response over CoAP: {}", text(&out));
        let t = ctx.openssl_ocsp_respin(&req, &resp).await;
        assert!(t.contains("Cert Status: revoked"), "{t}");
        assert!(t.contains("Revocation Reason: superseded"), "{t}");

        let crl = ctx.file("coap-crl1.der");
        let out = ctx.coap(&factory, &["-m", "get"], "/crl", &crl).await;
        assert!(crl.exists(), "no CRL over CoAP: {}", text(&out));
        let crl_text = ctx.openssl_crl_checked(&crl).await;
        assert!(
            crl_text.contains(&format!("Serial Number: {serial_text}")),
            "serial {serial_text} not in the CRL: {crl_text}"
        );
    })
    .await;
}
