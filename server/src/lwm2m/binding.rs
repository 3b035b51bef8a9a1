//! The `b=` Binding Mode parameter (Core 1.1 §5.3.1 Table "Registration parameters", Transport
//! §6.4.3).
//!
//! LwM2M 1.0 writes queue mode inside the binding (`U`, `UQ`, `S`, `SQ`, `US`, `UQS`); 1.1 moved
//! it to a separate `Q` parameter and added `T` (TCP) and `N` (non-IP); 1.2 added `M` (MQTT) and
//! `H` (HTTP). Both styles are read here: a 1.1+ client that still writes `UQ` gets queue mode,
//! since the letter means the same thing and refusing it helps nobody.

use std::fmt;

use crate::registry::Lwm2mVersion;

/// A transport of the binding, in the order letters are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Sms,
    NonIp,
    Mqtt,
    Http,
}

impl Transport {
    pub const ALL: [Transport; 6] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Sms,
        Transport::NonIp,
        Transport::Mqtt,
        Transport::Http,
    ];

    pub const fn letter(self) -> char {
        match self {
            Transport::Udp => 'U',
            Transport::Tcp => 'T',
            Transport::Sms => 'S',
            Transport::NonIp => 'N',
            Transport::Mqtt => 'M',
            Transport::Http => 'H',
        }
    }

    fn from_letter(c: char) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.letter() == c)
    }

    /// The first LwM2M version that defines this transport letter.
    const fn since(self) -> Lwm2mVersion {
        match self {
            Transport::Udp | Transport::Sms => Lwm2mVersion::V1_0,
            Transport::Tcp | Transport::NonIp => Lwm2mVersion::V1_1,
            Transport::Mqtt | Transport::Http => Lwm2mVersion::V1_2,
        }
    }
}

/// A parsed binding: a non-empty set of transports, and whether `Q` was among the letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Binding {
    /// Bit `i` set = `Transport::ALL[i]` present; never 0.
    transports: u8,
    /// `Q` inside the binding (1.0 style).
    pub queue: bool,
}

impl Default for Binding {
    /// `U`: the default when `b` is absent (Core 1.1 §5.3.1).
    fn default() -> Binding {
        Binding::of(&[Transport::Udp], false)
    }
}

impl Binding {
    /// A binding of these transports (`transports` must not be empty for a valid binding;
    /// an empty slice gives `U`).
    pub fn of(transports: &[Transport], queue: bool) -> Binding {
        let mut bits = 0u8;
        for t in transports {
            bits |= 1 << (*t as u8);
        }
        if bits == 0 {
            bits = 1;
        }
        Binding {
            transports: bits,
            queue,
        }
    }

    /// Reads `b=` letters for a client of `version`. Each letter at most once, at least one
    /// transport, and only letters that `version` defines.
    pub fn parse(s: &str, version: Lwm2mVersion) -> Option<Binding> {
        let mut bits = 0u8;
        let mut queue = false;
        for c in s.chars() {
            if c == 'Q' {
                if queue {
                    return None;
                }
                queue = true;
                continue;
            }
            let t = Transport::from_letter(c)?;
            let bit = 1 << (t as u8);
            if bits & bit != 0 || t.since() > version {
                return None;
            }
            bits |= bit;
        }
        (bits != 0).then_some(Binding {
            transports: bits,
            queue,
        })
    }

    pub fn transports(&self) -> impl Iterator<Item = Transport> + '_ {
        Transport::ALL
            .into_iter()
            .filter(|t| self.transports & (1 << (*t as u8)) != 0)
    }

    pub fn has(&self, t: Transport) -> bool {
        self.transports & (1 << (t as u8)) != 0
    }

    /// True when every letter is defined by `version` (an Update's binding is read before the
    /// registration, and so the version, is known).
    pub fn fits(&self, version: Lwm2mVersion) -> bool {
        self.transports().all(|t| t.since() <= version)
    }

    /// The transport letters without `Q` (`US`), as the registration record keeps them.
    pub fn letters(&self) -> String {
        self.transports().map(Transport::letter).collect()
    }
}

impl fmt::Display for Binding {
    /// As written on the wire: 1.0 style puts `Q` right after `U` (`UQS`) or after `S` (`SQ`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut queued = !self.queue;
        for t in self.transports() {
            write!(f, "{}", t.letter())?;
            if !queued && matches!(t, Transport::Udp | Transport::Sms) {
                f.write_str("Q")?;
                queued = true;
            }
        }
        if !queued {
            f.write_str("Q")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Lwm2mVersion::*;

    #[test]
    fn lwm2m_1_0_bindings_with_queue_inside() {
        for (s, letters, queue) in [
            ("U", "U", false),
            ("UQ", "U", true),
            ("S", "S", false),
            ("SQ", "S", true),
            ("US", "US", false),
            ("UQS", "US", true),
        ] {
            let b = Binding::parse(s, V1_0).unwrap_or_else(|| panic!("{s}"));
            assert_eq!((b.letters().as_str(), b.queue), (letters, queue), "{s}");
            assert_eq!(b.to_string(), s, "writes back as read");
        }
    }

    #[test]
    fn letters_are_checked_against_the_version() {
        assert_eq!(Binding::parse("T", V1_0), None);
        assert_eq!(Binding::parse("UN", V1_0), None);
        assert!(Binding::parse("UTSN", V1_1).is_some());
        assert_eq!(Binding::parse("M", V1_1), None);
        assert!(Binding::parse("UMH", V1_2).is_some());
    }

    #[test]
    fn malformed_bindings() {
        for s in ["", "Q", "UU", "UQQ", "u", "X", "U S", "UQ=", "Ü"] {
            assert_eq!(Binding::parse(s, V1_2), None, "{s:?}");
        }
    }

    #[test]
    fn queue_inside_is_accepted_from_1_1() {
        let b = Binding::parse("UQ", V1_1);
        assert_eq!(b.map(|b| b.queue), Some(true));
    }
}
