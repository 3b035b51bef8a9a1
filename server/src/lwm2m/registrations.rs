//! The registrations the server holds, in memory, with their parsed object links, content
//! formats and expiry deadlines. A later step backs this with the store; the interface is kept
//! narrow (register, update, deregister, expire, lookups) so that it can.
//!
//! - One registration per endpoint name: a Register for a name that is already registered
//!   replaces the old registration (new ID), and the caller gets the old one back so it can
//!   drop that endpoint's observations (Core 1.1 §5.3.1: a new Register voids the previous
//!   one; the server re-establishes observations after each Register).
//! - Expiry is at `last_update + lifetime (+ grace)`; lifetime 0 never expires (Server object
//!   1.2 Lifetime). `next_expiry` is for the caller's timer; `expire(now)` removes what is due.
//! - IDs are 10 characters from a seeded generator, unique among live registrations. They are
//!   not secrets (Update and De-register are checked against the client's identity), so a
//!   fast non-cryptographic generator is enough; the caller seeds it (no OS randomness here).

use std::collections::{BTreeSet, HashMap};

use steward_objects::link::ObjectLinks;
use steward_objects::{ClientFormats, Path, Version};

use super::binding::Binding;
use crate::registry::{Lwm2mVersion, PeerIdentity, Registration};

/// A registration with what the server derived from its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredClient {
    pub registration: Registration,
    pub links: LinkSummary,
    pub formats: ClientFormats,
}

impl RegisteredClient {
    /// The announced objects and versions, for `ModelRegistry::for_client`.
    pub fn announced_versions(&self) -> Vec<(u16, Option<Version>)> {
        self.links.announced_versions().to_vec()
    }
}

/// What the server keeps of a client's object links for addressing it and typing its
/// content: the alternate path and the announced object versions. The full parse
/// ([`ObjectLinks`]) costs about a kilobyte of B-tree nodes per client, and the raw payload
/// is kept anyway in [`Registration::object_links`] for the store and the API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkSummary {
    /// `None` for the default root `/`.
    alternate_path: Option<Box<str>>,
    announced: Box<[(u16, Option<Version>)]>,
}

impl LinkSummary {
    pub fn of(links: &ObjectLinks) -> LinkSummary {
        let alternate_path = match links.alternate_path() {
            "/" => None,
            p => Some(p.into()),
        };
        LinkSummary {
            alternate_path,
            announced: links.announced_versions().into_boxed_slice(),
        }
    }

    /// `/` or the alternate path without a trailing slash (`/lwm2m`).
    pub fn alternate_path(&self) -> &str {
        self.alternate_path.as_deref().unwrap_or("/")
    }

    /// The URI path to use for `path` on this client: `/lwm2m/3/0` under `/lwm2m`.
    pub fn client_path(&self, path: &Path) -> String {
        match (self.alternate_path.as_deref(), path) {
            (None, p) => p.to_string(),
            (Some(prefix), Path::Root) => prefix.to_owned(),
            (Some(prefix), p) => format!("{prefix}{p}"),
        }
    }

    /// The announced objects and their `ver=` (absent means 1.0), by object ID.
    pub fn announced_versions(&self) -> &[(u16, Option<Version>)] {
        &self.announced
    }
}

/// What a Register establishes, after parsing and authorization.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRegistration {
    pub endpoint: String,
    pub version: Lwm2mVersion,
    pub lifetime: u32,
    pub binding: Binding,
    pub queue_mode: bool,
    pub sms: Option<String>,
    pub links: ObjectLinks,
    pub address: String,
    pub identity: PeerIdentity,
}

/// What an Update changes, after parsing and authorization; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes {
    pub lifetime: Option<u32>,
    pub binding: Option<Binding>,
    pub queue_mode: Option<bool>,
    pub sms: Option<String>,
    pub links: Option<ObjectLinks>,
    /// The address the Update came from (NAT rebinding, DTLS Connection ID).
    pub address: Option<String>,
}

/// The outcome of [`Registrations::register`].
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub registration: Registration,
    /// The endpoint's previous registration, now gone.
    pub replaced: Option<Registration>,
}

/// A stored registration that [`Registrations::restore`] could not take back as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreIssue {
    pub endpoint: String,
    pub id: String,
    pub problem: String,
}

#[derive(Debug)]
pub struct Registrations {
    clients: HashMap<String, RegisteredClient>,
    /// Endpoint name → registration ID.
    by_endpoint: HashMap<String, String>,
    /// (deadline unix ms, registration ID) for registrations that expire.
    deadlines: BTreeSet<(u64, String)>,
    ids: IdGenerator,
    grace_ms: u64,
}

impl Registrations {
    /// `seed` drives the ID generator; `grace_ms` is added to every lifetime before expiry.
    pub fn new(seed: u64, grace_ms: u64) -> Registrations {
        Registrations {
            clients: HashMap::new(),
            by_endpoint: HashMap::new(),
            deadlines: BTreeSet::new(),
            ids: IdGenerator(seed),
            grace_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&RegisteredClient> {
        self.clients.get(id)
    }

    pub fn by_endpoint(&self, endpoint: &str) -> Option<&RegisteredClient> {
        self.by_endpoint
            .get(endpoint)
            .and_then(|id| self.clients.get(id))
    }

    pub fn iter(&self) -> impl Iterator<Item = &RegisteredClient> {
        self.clients.values()
    }

    /// Adds a registration, replacing the endpoint's previous one if there is one.
    pub fn register(&mut self, new: NewRegistration, now_ms: u64) -> Registered {
        let replaced = self
            .by_endpoint
            .get(&new.endpoint)
            .cloned()
            .and_then(|old| self.remove(&old));
        let id = loop {
            let id = self.ids.next_id();
            if !self.clients.contains_key(&id) {
                break id;
            }
        };
        let registration = Registration {
            id: id.clone(),
            endpoint: new.endpoint.clone(),
            version: new.version,
            lifetime: new.lifetime,
            binding: new.binding.letters(),
            queue_mode: new.queue_mode,
            sms: new.sms,
            object_links: new.links.to_string(),
            address: new.address,
            identity: new.identity,
            registered_at_ms: now_ms,
            last_update_ms: now_ms,
        };
        let client = RegisteredClient {
            formats: formats_of(new.version, &new.links),
            links: LinkSummary::of(&new.links),
            registration: registration.clone(),
        };
        self.by_endpoint.insert(new.endpoint, id.clone());
        self.insert(client);
        Registered {
            registration,
            replaced,
        }
    }

    /// Applies an Update and renews the lifetime; `(previous, current)`, or `None` for an
    /// unknown ID.
    pub fn update(
        &mut self,
        id: &str,
        changes: Changes,
        now_ms: u64,
    ) -> Option<(Registration, Registration)> {
        let mut client = self.remove_entry(id)?;
        let previous = client.registration.clone();
        let r = &mut client.registration;
        if let Some(lt) = changes.lifetime {
            r.lifetime = lt;
        }
        if let Some(b) = changes.binding {
            r.binding = b.letters();
        }
        if let Some(q) = changes.queue_mode {
            r.queue_mode = q;
        }
        if let Some(sms) = changes.sms {
            r.sms = Some(sms);
        }
        if let Some(address) = changes.address {
            r.address = address;
        }
        if let Some(links) = changes.links {
            r.object_links = links.to_string();
            client.formats = formats_of(r.version, &links);
            client.links = LinkSummary::of(&links);
        }
        r.last_update_ms = now_ms;
        let current = r.clone();
        self.insert(client);
        Some((previous, current))
    }

    /// Removes a registration (De-register); `None` for an unknown ID.
    pub fn deregister(&mut self, id: &str) -> Option<Registration> {
        self.remove(id)
    }

    /// Puts back registrations read from the store (server start): each one is held as it was
    /// stored, with its ID, lifetime and deadline, so clients can Update and De-register as if
    /// the server had never stopped. A restored registration whose deadline has passed is
    /// expired by the next [`Registrations::expire`]. An endpoint or ID that appears twice
    /// keeps the later record. Object links that no longer parse leave the registration in
    /// place with no links (the next Update with a payload brings them back); each such
    /// problem is returned for the caller to log.
    pub fn restore(&mut self, registrations: Vec<Registration>) -> Vec<RestoreIssue> {
        let mut issues = Vec::new();
        for registration in registrations {
            if let Some(old) = self.by_endpoint.get(&registration.endpoint).cloned() {
                self.remove(&old);
            }
            if self.clients.contains_key(&registration.id) {
                self.remove(&registration.id.clone());
            }
            let links = match ObjectLinks::parse(registration.object_links.as_bytes()) {
                Ok(links) => links,
                Err(e) => {
                    issues.push(RestoreIssue {
                        endpoint: registration.endpoint.clone(),
                        id: registration.id.clone(),
                        problem: format!("stored object links do not parse: {e}"),
                    });
                    ObjectLinks::new()
                }
            };
            let client = RegisteredClient {
                formats: formats_of(registration.version, &links),
                links: LinkSummary::of(&links),
                registration,
            };
            self.by_endpoint.insert(
                client.registration.endpoint.clone(),
                client.registration.id.clone(),
            );
            self.insert(client);
        }
        issues
    }

    /// Removes whatever registration an endpoint has, without an event: the caller puts the
    /// store's version back with [`Registrations::restore`] when a write to the store failed.
    pub fn forget_endpoint(&mut self, endpoint: &str) -> Option<Registration> {
        let id = self.by_endpoint.get(endpoint).cloned()?;
        self.remove(&id)
    }

    /// When the next registration expires (unix ms), for the caller's timer.
    pub fn next_expiry(&self) -> Option<u64> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Removes and returns every registration whose deadline is at or before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Registration> {
        let mut expired = Vec::new();
        while let Some((at, id)) = self.deadlines.first().cloned() {
            if at > now_ms {
                break;
            }
            self.deadlines.pop_first();
            expired.extend(self.remove(&id));
        }
        expired
    }

    fn deadline(&self, r: &Registration) -> Option<u64> {
        r.expires_at_ms().map(|at| at.saturating_add(self.grace_ms))
    }

    fn insert(&mut self, client: RegisteredClient) {
        if let Some(at) = self.deadline(&client.registration) {
            self.deadlines.insert((at, client.registration.id.clone()));
        }
        self.clients.insert(client.registration.id.clone(), client);
    }

    /// Takes a registration out of the ID map and the deadlines, keeping the endpoint index.
    fn remove_entry(&mut self, id: &str) -> Option<RegisteredClient> {
        let client = self.clients.remove(id)?;
        if let Some(at) = self.deadline(&client.registration) {
            self.deadlines.remove(&(at, id.to_owned()));
        }
        Some(client)
    }

    fn remove(&mut self, id: &str) -> Option<Registration> {
        let client = self.remove_entry(id)?;
        let endpoint = &client.registration.endpoint;
        if self.by_endpoint.get(endpoint).is_some_and(|i| i == id) {
            self.by_endpoint.remove(endpoint);
        }
        Some(client.registration)
    }
}

/// The formats a client accepts: its `lwm2m` version and the root link's `ct`.
fn formats_of(version: Lwm2mVersion, links: &ObjectLinks) -> ClientFormats {
    let lwm2m = match version {
        Lwm2mVersion::V1_0 => Version::V1_0,
        Lwm2mVersion::V1_1 => Version::V1_1,
        Lwm2mVersion::V1_2 => Version::V1_2,
    };
    ClientFormats::new(lwm2m, links.content_formats())
}

/// Short registration IDs: splitmix64 output, 50 bits as 10 base-32 characters.
#[derive(Debug)]
struct IdGenerator(u64);

impl IdGenerator {
    const ALPHABET: &'static [u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

    fn next_id(&mut self) -> String {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // `& 31` keeps every index inside the 32-letter alphabet.
        (0..10)
            .map(|i| char::from(Self::ALPHABET[((z >> (5 * i)) & 31) as usize]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_objects::ContentFormat;

    fn new(ep: &str, lifetime: u32) -> NewRegistration {
        NewRegistration {
            endpoint: ep.into(),
            version: Lwm2mVersion::V1_1,
            lifetime,
            binding: Binding::default(),
            queue_mode: false,
            sms: None,
            links: ObjectLinks::new()
                .with_root("/", &[ContentFormat::SenmlCbor])
                .with_instance(1, 0)
                .with_object(3, Some(Version::V1_1))
                .with_instance(3, 0),
            address: "10.0.0.1:5683".into(),
            identity: PeerIdentity::Psk(ep.as_bytes().to_vec()),
        }
    }

    #[test]
    fn register_lookup_and_derived_data() {
        let mut regs = Registrations::new(1, 0);
        let r = regs.register(new("a", 60), 1_000).registration;
        assert_eq!(r.id.len(), 10);
        assert_eq!(r.binding, "U");
        let c = regs.by_endpoint("a").map(|c| c.registration.id.clone());
        assert_eq!(c.as_deref(), Some(r.id.as_str()));
        let client = regs.get(&r.id).cloned();
        let client = client.unwrap_or_else(|| panic!("registered"));
        assert_eq!(client.formats.announced, vec![ContentFormat::SenmlCbor]);
        assert_eq!(client.formats.lwm2m, Version::V1_1);
        assert_eq!(
            client.announced_versions(),
            vec![(1, None), (3, Some(Version::V1_1))]
        );
        assert_eq!(regs.next_expiry(), Some(61_000));
    }

    #[test]
    fn re_register_replaces() {
        let mut regs = Registrations::new(1, 0);
        let first = regs.register(new("a", 60), 0).registration;
        let second = regs.register(new("a", 60), 10);
        assert_eq!(second.replaced.as_ref(), Some(&first));
        assert_ne!(second.registration.id, first.id);
        assert_eq!(regs.len(), 1);
        assert!(regs.get(&first.id).is_none());
        // The old deadline went with the old registration.
        assert_eq!(regs.next_expiry(), Some(60_010));
    }

    #[test]
    fn update_renews_and_changes() {
        let mut regs = Registrations::new(1, 0);
        let r = regs.register(new("a", 60), 0).registration;
        let changes = Changes {
            lifetime: Some(120),
            queue_mode: Some(true),
            links: Some(ObjectLinks::new().with_instance(1, 0).with_instance(5, 0)),
            ..Changes::default()
        };
        let (prev, cur) = regs
            .update(&r.id, changes, 30_000)
            .unwrap_or_else(|| panic!());
        assert_eq!(prev, r);
        assert_eq!((cur.lifetime, cur.queue_mode), (120, true));
        assert_eq!(cur.object_links, "</1/0>,</5/0>");
        assert_eq!(regs.next_expiry(), Some(150_000));
        assert!(regs.update("nope", Changes::default(), 0).is_none());
        // The formats follow the new payload (no root link: none announced).
        let formats = regs.get(&r.id).map(|c| c.formats.announced.clone());
        assert_eq!(formats, Some(vec![]));
    }

    #[test]
    fn expiry_and_lifetime_zero() {
        let mut regs = Registrations::new(7, 500);
        let a = regs.register(new("a", 10), 0).registration;
        regs.register(new("forever", 0), 0);
        assert_eq!(regs.next_expiry(), Some(10_500));
        assert!(regs.expire(10_499).is_empty());
        assert_eq!(regs.expire(10_500), vec![a]);
        assert_eq!(regs.next_expiry(), None);
        assert_eq!(regs.len(), 1);
        assert!(regs.by_endpoint("a").is_none());
    }

    #[test]
    fn deregister_removes_everything() {
        let mut regs = Registrations::new(3, 0);
        let r = regs.register(new("a", 10), 0).registration;
        assert_eq!(regs.deregister(&r.id), Some(r.clone()));
        assert_eq!(regs.deregister(&r.id), None);
        assert!(regs.is_empty() && regs.by_endpoint("a").is_none());
        assert_eq!(regs.next_expiry(), None);
    }

    #[test]
    fn restore_keeps_ids_deadlines_and_links() {
        let mut before = Registrations::new(1, 500);
        let a = before.register(new("a", 10), 1_000).registration;
        let b = before.register(new("b", 0), 1_000).registration;
        let mut broken = before.register(new("c", 20), 1_000).registration;
        broken.object_links = "<<<".into();

        let mut after = Registrations::new(99, 500);
        let issues = after.restore(vec![a.clone(), b.clone(), broken.clone()]);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].endpoint, "c");
        assert_eq!(after.len(), 3);
        assert_eq!(after.get(&a.id).map(|c| &c.registration), Some(&a));
        assert_eq!(
            after.by_endpoint("b").map(|c| c.registration.id.clone()),
            Some(b.id.clone())
        );
        let links = after.get(&a.id).map(|c| c.announced_versions());
        assert_eq!(links, Some(vec![(1, None), (3, Some(Version::V1_1))]));
        assert_eq!(after.next_expiry(), Some(11_500));
        assert_eq!(after.expire(11_500), vec![a.clone()]);
        // A new registration never takes a restored ID.
        let fresh = after.register(new("d", 10), 2_000).registration;
        assert!(![&a.id, &b.id, &broken.id].contains(&&fresh.id));
        // Restoring an endpoint again replaces its entry; forgetting removes it.
        after.restore(vec![b.clone()]);
        assert_eq!(after.len(), 3);
        assert_eq!(after.forget_endpoint("b"), Some(b));
        assert_eq!(after.forget_endpoint("b"), None);
        assert_eq!(after.len(), 2);
    }

    #[test]
    fn ids_are_distinct() {
        let mut g = IdGenerator(0);
        let ids: BTreeSet<String> = (0..10_000).map(|_| g.next_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
