//! Object 42769 (Trust Recovery) on the device: its resources mirror the device's
//! [`DeviceTrust`], and writes of a recovery token (/42769/0/3) or a CTL update (/42769/0/5)
//! go to it rather than into the tree. See [`crate::trust`] for the rules.

use std::sync::{Arc, OnceLock};

use steward_coap::message::{Code, Response};
use steward_objects::{ContentFormat, Instance, Node, ObjectModel, Path, Resource, Value, codec};

use super::error::DmError;
use super::{Device, Effect, ExtraObject};
use crate::trust::{self, DeviceTrust, OBJECT, rid};

/// The 42769 model, parsed once per process.
fn model() -> Arc<ObjectModel> {
    static MODEL: OnceLock<Arc<ObjectModel>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| {
        let parsed = steward_objects::ddf::parse(trust::DDF)
            .ok()
            .and_then(|models| models.into_iter().find(|m| m.id == OBJECT));
        // The DDF is compiled in and covered by tests: a parse failure is a build defect.
        #[allow(clippy::expect_used)]
        Arc::new(parsed.expect("the bundled 42769 DDF parses"))
    }))
}

/// The extra object a trust-configured device is made with (instance 0, filled in later).
pub(super) fn extra_object() -> ExtraObject {
    ExtraObject {
        model: model(),
        instances: [(
            0,
            Instance {
                resources: Default::default(),
            },
        )]
        .into(),
    }
}

/// Where a write to 42769 goes.
pub(super) enum Context {
    /// The registered LwM2M server.
    Management,
    /// A bootstrap session.
    Bootstrap,
}

impl Device {
    /// The device's trust, when it is made for trust-chain recovery.
    pub fn trust(&self) -> Option<&DeviceTrust> {
        self.trust.as_ref()
    }

    /// The device's wall clock for the token checks (Unix seconds): the device loop sets it
    /// before each request, so the device itself reads no clock.
    pub fn set_unix_now(&mut self, now: u64) {
        self.unix_now = now;
    }

    /// A DTLS session with the bootstrap server came up with `chain` (see
    /// [`DeviceTrust::bootstrap_session`]).
    pub fn trust_bootstrap_session(&mut self, chain: &[Vec<u8>]) {
        if let Some(t) = &mut self.trust {
            t.bootstrap_session(chain);
            self.refresh_trust();
        }
    }

    /// Restores a saved trust (see [`crate::state`]).
    pub fn restore_trust(&mut self, saved: &trust::SavedTrust) -> Result<(), String> {
        if let Some(t) = &mut self.trust {
            t.restore(saved)?;
            self.refresh_trust();
        }
        Ok(())
    }

    /// Copies the trust state into /42769/0.
    pub(super) fn refresh_trust(&mut self) {
        let Some(t) = &self.trust else {
            return;
        };
        let opaque = |b: Option<Vec<u8>>| Resource::Single(Value::Opaque(b.unwrap_or_default()));
        let resources = [
            (
                rid::FINGERPRINT,
                opaque(t.fingerprint().map(|f| f.to_vec())),
            ),
            (
                rid::INSTALLATION,
                Resource::Single(Value::String(t.config().installation.clone())),
            ),
            (
                rid::STATE,
                Resource::Single(Value::Integer(t.state() as i64)),
            ),
            (
                rid::LAST_RESULT,
                Resource::Single(Value::String(t.last_result().to_owned())),
            ),
            (
                rid::CTL_VERSION,
                Resource::Single(Value::Integer(
                    t.ctl()
                        .map_or(0, |c| i64::try_from(c.version()).unwrap_or(i64::MAX)),
                )),
            ),
            (rid::VENDOR_KEY_ID, opaque(Some(t.vendor_key_id().to_vec()))),
            (
                rid::LAST_TOKEN_ID,
                opaque(t.last_token().map(|c| c.to_vec())),
            ),
            (
                rid::LAST_OUTCOME,
                Resource::Single(Value::Integer(t.last_outcome() as i64)),
            ),
        ];
        let instance = self
            .tree
            .entry(OBJECT)
            .or_default()
            .entry(0)
            .or_insert_with(|| Instance {
                resources: Default::default(),
            });
        instance.resources.extend(resources);
        self.generation += 1;
    }

    /// Whether a write at `path` is one for [`Device::trust_write`].
    pub(super) fn is_trust_write(&self, path: &Path) -> bool {
        self.trust.is_some() && path.object_id() == Some(OBJECT)
    }

    /// A write on 42769: the token and CTL-update resources are handed to the trust (4.03 with
    /// the reason when refused); the others are read-only.
    pub(super) fn trust_write(
        &mut self,
        path: &Path,
        format: ContentFormat,
        payload: &[u8],
        context: Context,
    ) -> Result<Response, DmError> {
        let (0, rid) = (path.instance_id().unwrap_or(u16::MAX), path.resource_id()) else {
            return Err(DmError::not_found(path));
        };
        if let Some(r) = rid
            && r != rid::TOKEN
            && r != rid::CTL_UPDATE
        {
            return Err(DmError::not_allowed("Write", path));
        }
        self.check_format(format)?;
        let node = codec::decode(format, path, payload, &*self.bs_models)
            .map_err(|e| DmError::from_decode(format.code(), &e))?;
        let written: Vec<(u16, Vec<u8>)> = match (node, rid) {
            (Node::Resource(Resource::Single(Value::Opaque(b))), Some(r)) => vec![(r, b)],
            (Node::Instance(inst), None) => inst
                .resources
                .into_iter()
                .map(|(r, res)| match res {
                    Resource::Single(Value::Opaque(b)) => Ok((r, b)),
                    _ => Err(DmError::BadRequest(format!(
                        "/{OBJECT}/0/{r} is not opaque"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(DmError::BadRequest("payload does not fit the path".into())),
        };
        let now = self.unix_now;
        let mut result = Ok(());
        let mut recovered = false;
        for (r, bytes) in written {
            let Some(t) = &mut self.trust else {
                return Err(DmError::not_found(path));
            };
            let outcome = match r {
                rid::TOKEN => t.offer_token(&bytes, now).map(|()| recovered = true),
                rid::CTL_UPDATE => t.offer_ctl_update(&bytes),
                _ => {
                    result = Err(DmError::not_allowed("Write", Path::Resource(OBJECT, 0, r)));
                    break;
                }
            };
            if let Err(refused) = outcome {
                result = Err(DmError::Forbidden(refused.reason));
                break;
            }
        }
        self.refresh_trust();
        result?;
        if recovered && matches!(context, Context::Management) {
            // From the registered server the reset follows the response; in a bootstrap
            // session Bootstrap-Finish triggers it.
            self.effects.push(Effect::TrustReset);
        }
        Ok(Response::new(Code::CHANGED))
    }

    /// Back to the initial state after a recovery: the bootstrapped accounts go (the
    /// bootstrap-server account stays), so the device bootstraps again.
    pub(crate) fn forget_bootstrapped_accounts(&mut self) {
        for object in [0u16, 1] {
            let doomed: Vec<u16> = self
                .tree
                .get(&object)
                .into_iter()
                .flatten()
                .filter(|(_, inst)| !(object == 0 && crate::bootstrap::account::is_bootstrap(inst)))
                .map(|(iid, _)| *iid)
                .collect();
            for iid in doomed {
                if let Some(instances) = self.tree.get_mut(&object) {
                    instances.remove(&iid);
                }
            }
        }
        self.attributes.clear();
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use steward_coap::message::Method;
    use steward_objects::Version;

    use super::*;
    use crate::device::{DeviceConfig, handle, handle_bootstrap};
    use crate::trust::tests::{INSTALLATION, NOW, anchors, token_with, vendor};
    use crate::trust::{InitialTrust, TrustConfig, TrustState};

    fn device() -> Device {
        let mut config = DeviceConfig::new("locked", Version::V1_1);
        config.trust = Some(TrustConfig {
            installation: INSTALLATION.into(),
            vendor_key: *vendor().verifying_key(),
            initial: InitialTrust::Factory(anchors()),
            recovery_retry: crate::trust::DEFAULT_RECOVERY_RETRY,
        });
        let mut device = Device::try_new(config).expect("device");
        device.set_unix_now(NOW);
        device
    }

    fn put(path: &str, format: ContentFormat, payload: Vec<u8>) -> steward_coap::message::Request {
        steward_coap::message::Request::new(Method::Put)
            .with_path(path)
            .with_payload(format.code(), payload)
    }

    fn opaque(device: &Device, r: u16) -> Vec<u8> {
        match device.node(&Path::Resource(OBJECT, 0, r)) {
            Some(Node::Resource(Resource::Single(Value::Opaque(b)))) => b,
            other => panic!("/42769/0/{r}: {other:?}"),
        }
    }

    #[test]
    fn the_object_mirrors_the_trust() {
        let device = device();
        let fingerprint = device
            .trust()
            .and_then(DeviceTrust::fingerprint)
            .expect("ctl");
        assert_eq!(opaque(&device, rid::FINGERPRINT), fingerprint);
        assert_eq!(
            device.node(&Path::Resource(OBJECT, 0, rid::INSTALLATION)),
            Some(Node::Resource(Resource::Single(Value::String(
                INSTALLATION.into()
            ))))
        );
        assert!(device.object_links().to_string().contains("</42769/0>"));
    }

    #[test]
    fn recovery_mode_accepts_only_a_token_then_finish() {
        let mut device = device();
        device.trust_bootstrap_session(&[b"leaf B".to_vec(), b"root B".to_vec()]);
        assert_eq!(
            device.trust().map(DeviceTrust::state),
            Some(TrustState::Recovery)
        );
        let delete = steward_coap::message::Request::new(Method::Delete).with_path("/0");
        assert_eq!(handle_bootstrap(&mut device, &delete).code, Code::FORBIDDEN);
        let finish = steward_coap::message::Request::new(Method::Post).with_path("/bs");
        assert_eq!(handle_bootstrap(&mut device, &finish).code, Code::FORBIDDEN);
        let before = opaque(&device, rid::FINGERPRINT);

        // A token for another installation: refused, nothing changes.
        let wrong = token_with(&vendor(), |c| c.installation = "elsewhere".into());
        let answer = handle_bootstrap(
            &mut device,
            &put("/42769/0/3", ContentFormat::Opaque, wrong),
        );
        assert_eq!(answer.code, Code::FORBIDDEN);
        assert_eq!(opaque(&device, rid::FINGERPRINT), before);
        assert!(device.take_effects().is_empty());

        let good = token_with(&vendor(), |_| {});
        let answer = handle_bootstrap(&mut device, &put("/42769/0/3", ContentFormat::Opaque, good));
        assert_eq!(answer.code, Code::CHANGED);
        assert_eq!(handle_bootstrap(&mut device, &finish).code, Code::CHANGED);
        assert_eq!(device.take_effects(), vec![Effect::TrustReset]);
        assert_eq!(opaque(&device, rid::LAST_TOKEN_ID), vec![7; 16]);
    }

    #[test]
    fn the_registered_server_can_write_a_token_but_not_the_state() {
        let mut device = device();
        device.trust_bootstrap_session(&[anchors()[0].clone()]);
        let state = put("/42769/0/2", ContentFormat::Text, b"0".to_vec());
        assert_eq!(handle(&mut device, &state).code, Code::METHOD_NOT_ALLOWED);
        let token = token_with(&vendor(), |_| {});
        let answer = handle(
            &mut device,
            &put("/42769/0/3", ContentFormat::Opaque, token.clone()),
        );
        assert_eq!(answer.code, Code::CHANGED);
        assert_eq!(device.take_effects(), vec![Effect::TrustReset]);
        // Replayed: refused.
        let again = handle(
            &mut device,
            &put("/42769/0/3", ContentFormat::Opaque, token),
        );
        assert_eq!(again.code, Code::FORBIDDEN);
    }
}

#[cfg(test)]
mod persistence {
    use steward_objects::Version;

    use crate::device::{Device, DeviceConfig};
    use crate::state::{CredentialPaths, DeviceState};
    use crate::trust::tests::{INSTALLATION, NOW, anchors, token_with, vendor};
    use crate::trust::{InitialTrust, Outcome, TrustConfig, TrustState};

    fn first_use_device() -> Device {
        let mut config = DeviceConfig::new("locked", Version::V1_1);
        config.trust = Some(TrustConfig {
            installation: INSTALLATION.into(),
            vendor_key: *vendor().verifying_key(),
            initial: InitialTrust::FirstUse,
            recovery_retry: crate::trust::DEFAULT_RECOVERY_RETRY,
        });
        let mut device = Device::try_new(config).expect("device");
        device.set_unix_now(NOW);
        device
    }

    /// A locked-in device that loses power comes back locked in to the same CTL, with its
    /// token history: neither a restart nor a state file is a way out of the CTL.
    #[test]
    fn a_power_cycle_keeps_the_ctl_and_the_used_tokens() {
        let mut device = first_use_device();
        device.trust_bootstrap_session(&[b"leaf".to_vec(), anchors()[0].clone()]);
        assert!(device.trust.as_mut().expect("trust").bootstrap_finished());
        let fingerprint = device.trust().and_then(|t| t.fingerprint());
        let wrong = token_with(&vendor(), |c| c.installation = "elsewhere".into());
        assert!(
            device
                .trust
                .as_mut()
                .expect("trust")
                .offer_token(&wrong, NOW)
                .is_err()
        );

        let saved = DeviceState::capture(&device, None, CredentialPaths::default());
        let bytes = saved.to_json().expect("json");
        let loaded =
            DeviceState::from_json(&bytes, std::path::Path::new("locked.json")).expect("loads");
        let mut restarted = first_use_device();
        assert_eq!(
            restarted.trust().map(|t| t.state()),
            Some(TrustState::Initial)
        );
        loaded.apply(&mut restarted);
        let trust = restarted.trust().expect("trust");
        assert_eq!(trust.fingerprint(), fingerprint);
        assert_eq!(trust.state(), TrustState::LockedIn);
        assert_eq!(trust.last_outcome(), Outcome::WrongInstallation);

        // A state file whose CTL was tampered with is refused, not read as "no CTL".
        let text = String::from_utf8(bytes).expect("utf-8");
        let ctl = saved.trust.and_then(|t| t.ctl).expect("saved CTL");
        let tampered = text.replace(&ctl, "00");
        assert!(
            DeviceState::from_json(tampered.as_bytes(), std::path::Path::new("locked.json"))
                .is_err()
        );
    }
}
