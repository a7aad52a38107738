//! The fleet's key layout in etcd, all under `{prefix}/{name}/`:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `leader` | leader's replica id; its `create_revision` is the leader's term | leader's |
//! | `state/{route}` | [`super::RouteState`] JSON | none |
//! | `evidence/{route}/{replica}` | [`super::StepEvidence`] JSON | the replica's |
//! | `members/{replica}` | [`super::MemberView`] JSON | the replica's |
//! | `commands/{route}/{id}` | [`super::FleetCommand`] JSON, deleted by the leader | none |

/// Builds and parses the keys of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    base: String,
}

/// What a key under the fleet's base is.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyKind<'a> {
    Leader,
    State(&'a str),
    Evidence(&'a str, &'a str),
    Member(&'a str),
    Command(&'a str),
    Other,
}

impl Keys {
    pub fn new(prefix: &str, name: &str) -> Keys {
        Keys {
            base: format!("{}/{}/", prefix.trim_end_matches('/'), name),
        }
    }

    /// Every key of the fleet starts with this.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn leader(&self) -> String {
        format!("{}leader", self.base)
    }

    pub fn state(&self, route: &str) -> String {
        format!("{}state/{route}", self.base)
    }

    pub fn evidence(&self, route: &str, replica: &str) -> String {
        format!("{}evidence/{route}/{replica}", self.base)
    }

    pub fn member(&self, replica: &str) -> String {
        format!("{}members/{replica}", self.base)
    }

    pub fn command(&self, route: &str, id: &str) -> String {
        format!("{}commands/{route}/{id}", self.base)
    }

    pub fn kind<'a>(&self, key: &'a str) -> KeyKind<'a> {
        let Some(rest) = key.strip_prefix(self.base.as_str()) else {
            return KeyKind::Other;
        };
        let parts: Vec<&'a str> = rest.split('/').collect();
        match parts.as_slice() {
            ["leader"] => KeyKind::Leader,
            ["state", route] => KeyKind::State(route),
            ["evidence", route, replica] => KeyKind::Evidence(route, replica),
            ["members", replica] => KeyKind::Member(replica),
            ["commands", route, _] => KeyKind::Command(route),
            _ => KeyKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = Keys::new("/canaryd/", "edge");
        assert_eq!(keys.state("shop"), "/canaryd/edge/state/shop");
        assert_eq!(keys.kind(&keys.state("shop")), KeyKind::State("shop"));
        assert_eq!(
            keys.kind(&keys.evidence("shop", "a")),
            KeyKind::Evidence("shop", "a")
        );
        assert_eq!(keys.kind(&keys.leader()), KeyKind::Leader);
        assert_eq!(
            keys.kind(&keys.command("shop", "x")),
            KeyKind::Command("shop")
        );
        assert_eq!(keys.kind("/canaryd/other/leader"), KeyKind::Other);
    }
}
