//! A visitor's consent to analytics (R3), and what analytics may be given of a request.
//!
//! Every statement of consent, given or withdrawn, is an event on the visitor's stream
//! (`visitor-<id>`) naming the policy version in force, so it can be shown later what the
//! visitor agreed to and when. `DNT: 1` on a request is a refusal for that request whatever
//! was stored, and a statement sent with it is recorded as a refusal. The choice is personal
//! data of the visitor (category `consent`) and goes after its retention rule; from then on
//! the visitor reads as not having consented.

use crate::event::*;
use crate::{Aggregate, Category, DomainEvent, Now, Personal, Subject, VisitorId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a visitor last stated, as the log holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VisitorConsent {
    /// The latest statement still readable: `None` before any, or once erased.
    pub current: Option<ConsentChoice>,
    /// The policy version of the latest statement (kept after its erasure).
    pub policy_version: Option<String>,
}

impl VisitorConsent {
    /// Whether analytics may run for a request of this visitor.
    pub fn allows_analytics(&self, do_not_track: bool) -> bool {
        !do_not_track && self.current.as_ref().is_some_and(|c| c.analytics)
    }
}

/// A visitor's statement, as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateConsent {
    pub visitor_id: VisitorId,
    pub analytics: bool,
    /// The request carried `DNT: 1`.
    pub do_not_track: bool,
    /// The policy version in force when the statement was made.
    pub policy_version: String,
}

impl Aggregate for VisitorConsent {
    const READS_PERSONAL_DATA: bool = true;
    type Command = StateConsent;
    type Error = std::convert::Infallible;

    fn decide(&self, c: StateConsent, now: Now) -> Result<Vec<DomainEvent>, Self::Error> {
        Ok(vec![ConsentStated {
            visitor_id: c.visitor_id,
            choice: Personal::new(
                Subject::visitor(c.visitor_id),
                Category::Consent,
                ConsentChoice {
                    analytics: c.analytics && !c.do_not_track,
                    do_not_track: c.do_not_track,
                },
            ),
            policy_version: c.policy_version,
            stated_at: now,
        }
        .into()])
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::ConsentStated(e) = event {
            self.current = e.choice.value().cloned();
            self.policy_version = Some(e.policy_version.clone());
        }
        self
    }
}

/// An IP address with its host part zeroed, as analytics may receive it (R3): IPv4 keeps
/// its first three octets, IPv6 its first 48 bits. An IPv4 address written as IPv6
/// (`::ffff:a.b.c.d`) is treated as the IPv4 address it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnonymizedIp(IpAddr);

impl AnonymizedIp {
    pub fn addr(self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for AnonymizedIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Anonymizes an address for analytics: IPv4's last octet and IPv6's last 80 bits zeroed.
/// `None` for text that is not an IP address (nothing of it is passed on).
pub fn anonymize_ip(text: &str) -> Option<AnonymizedIp> {
    let ip: IpAddr = text.trim().parse().ok()?;
    Some(AnonymizedIp(match ip {
        IpAddr::V4(v4) => IpAddr::V4(zero_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(zero_v4(v4)),
            None => {
                let kept = u128::from(v6) & (!0u128 << 80);
                IpAddr::V6(Ipv6Addr::from(kept))
            }
        },
    }))
}

fn zero_v4(ip: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = ip.octets();
    Ipv4Addr::new(a, b, c, 0)
}

/// What analytics may receive of one request (R3): nothing without the visitor's consent or
/// under `DNT: 1`; with it, the anonymized address only.
pub fn analytics_address(
    consent: &VisitorConsent,
    do_not_track: bool,
    client_ip: &str,
) -> Option<AnonymizedIp> {
    if !consent.allows_analytics(do_not_track) {
        return None;
    }
    anonymize_ip(client_ip)
}

/// The analytics message of a page view (R3): only for a visitor who consented and sent no
/// `DNT: 1`, with the IP anonymized, sealed as the visitor's consent data (erased with the
/// consent record, when an undelivered message is cancelled).
pub fn page_view(
    consent: &VisitorConsent,
    visitor_id: VisitorId,
    widget_id: crate::WidgetId,
    do_not_track: bool,
    client_ip: &str,
) -> Option<crate::event::MessageContent> {
    let ip = analytics_address(consent, do_not_track, client_ip)?;
    Some(crate::outbox::sealed(
        Subject::visitor(visitor_id),
        Category::Consent,
        crate::event::Outbound::PageView {
            widget_id,
            client_id: visitor_id,
            ip: ip.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn at(s: u32) -> Now {
        chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(s), 0).unwrap_or_default()
    }

    fn state(analytics: bool, dnt: bool) -> StateConsent {
        StateConsent {
            visitor_id: VisitorId(uuid::Uuid::from_u128(9)),
            analytics,
            do_not_track: dnt,
            policy_version: "1".into(),
        }
    }

    fn after(commands: &[StateConsent]) -> VisitorConsent {
        let mut history = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            let events = given::<VisitorConsent>(history.clone())
                .when(c.clone(), at(i as u32))
                .result()
                .expect("accepted");
            history.extend(events);
        }
        history
            .iter()
            .fold(VisitorConsent::default(), |s, e| s.evolve(e))
    }

    #[test]
    fn every_statement_is_an_event_with_the_policy_version() {
        let events = given::<VisitorConsent>([])
            .when(state(true, false), at(0))
            .result()
            .expect("accepted");
        match &events[..] {
            [DomainEvent::ConsentStated(e)] => {
                assert_eq!(e.policy_version, "1");
                assert_eq!(e.choice.category(), Category::Consent);
                assert_eq!(e.choice.value().map(|c| c.analytics), Some(true));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn consent_is_given_withdrawn_and_refused_under_dnt() {
        assert!(!VisitorConsent::default().allows_analytics(false));
        let given_once = after(&[state(true, false)]);
        assert!(given_once.allows_analytics(false));
        assert!(
            !given_once.allows_analytics(true),
            "DNT: 1 wins over consent"
        );
        assert!(!after(&[state(true, false), state(false, false)]).allows_analytics(false));
        // A statement sent under DNT: 1 is recorded as a refusal.
        let under_dnt = after(&[state(true, true)]);
        assert!(!under_dnt.allows_analytics(false));
        assert_eq!(
            under_dnt.current,
            Some(ConsentChoice {
                analytics: false,
                do_not_track: true
            })
        );
    }

    #[test]
    fn an_erased_statement_reads_as_no_consent() {
        let erased = DomainEvent::from(ConsentStated {
            visitor_id: VisitorId(uuid::Uuid::from_u128(9)),
            choice: Personal::erased(Subject::new("visitor", 9), Category::Consent),
            policy_version: "1".into(),
            stated_at: at(0),
        });
        let state = after(&[state(true, false)]).evolve(&erased);
        assert!(!state.allows_analytics(false));
        assert_eq!(state.policy_version.as_deref(), Some("1"));
    }

    #[test]
    fn ipv4_loses_its_last_octet() {
        let a = |s: &str| anonymize_ip(s).map(|a| a.to_string());
        assert_eq!(a("203.0.113.77").as_deref(), Some("203.0.113.0"));
        assert_eq!(a("127.0.0.1").as_deref(), Some("127.0.0.0"));
        assert_eq!(a("0.0.0.0").as_deref(), Some("0.0.0.0"));
        assert_eq!(a("255.255.255.255").as_deref(), Some("255.255.255.0"));
        assert_eq!(a(" 10.1.2.3 ").as_deref(), Some("10.1.2.0"));
    }

    #[test]
    fn ipv6_loses_its_last_80_bits() {
        let a = |s: &str| anonymize_ip(s).map(|a| a.to_string());
        assert_eq!(
            a("2001:db8:85a3:8d3:1319:8a2e:370:7348").as_deref(),
            Some("2001:db8:85a3::")
        );
        assert_eq!(a("::1").as_deref(), Some("::"));
        assert_eq!(a("fe80::1%eth0"), None, "a zone id is not an address");
        assert_eq!(
            a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").as_deref(),
            Some("ffff:ffff:ffff::")
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_anonymized_as_ipv4() {
        let a = |s: &str| anonymize_ip(s).map(|a| a.to_string());
        assert_eq!(a("::ffff:198.51.100.23").as_deref(), Some("198.51.100.0"));
        assert_eq!(a("::ffff:c633:6417").as_deref(), Some("198.51.100.0"));
    }

    #[test]
    fn malformed_addresses_give_nothing() {
        for bad in [
            "",
            "not an ip",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.4:80",
            "[::1]",
            "::g",
            "01.02.03.04x",
        ] {
            assert_eq!(anonymize_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn analytics_gets_an_address_only_with_consent_and_without_dnt() {
        let yes = after(&[state(true, false)]);
        assert_eq!(
            analytics_address(&yes, false, "192.0.2.9").map(|a| a.to_string()),
            Some("192.0.2.0".into())
        );
        assert_eq!(analytics_address(&yes, true, "192.0.2.9"), None);
        assert_eq!(
            analytics_address(&VisitorConsent::default(), false, "192.0.2.9"),
            None
        );
        assert_eq!(analytics_address(&yes, false, "garbage"), None);
    }
}
