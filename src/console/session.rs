//! The console's sessions and one-time login links, kept in memory: a restart signs
//! everyone out, which is the safe way round. Each session carries its own CSRF token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::Role;

/// How long a session lasts after sign-in (no sliding renewal: a stolen cookie expires).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a one-time login link may wait to be opened.
pub const LINK_TTL: Duration = Duration::from_secs(15 * 60);
/// Sessions kept at once; the oldest goes first beyond it (a login loop cannot fill memory).
const MAX_SESSIONS: usize = 1024;
const MAX_LINKS: usize = 64;

#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    pub csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    links: Mutex<HashMap<String, (Role, Instant)>>,
}

/// 32 random bytes, hex: a session id, a CSRF token or a link's secret.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS generator does not fail on Linux once booted; a zero token would be refused
    // by nothing, so a failure must not pass silently.
    if getrandom::fill(&mut bytes).is_err() {
        panic!("the OS random generator failed");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// A new session for `role`: its id (the cookie's value) and the session.
    pub fn open(&self, role: Role) -> (String, Session) {
        let id = random_token();
        let session = Session {
            role,
            csrf: random_token(),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut all = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        all.retain(|_, s| s.expires > now);
        if all.len() >= MAX_SESSIONS {
            if let Some(oldest) = all
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                all.remove(&oldest);
            }
        }
        all.insert(id.clone(), session.clone());
        (id, session)
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let mut all = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        match all.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                all.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// A secret that opens one session of `role` once, within [`LINK_TTL`].
    pub fn link(&self, role: Role) -> String {
        let secret = random_token();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        links.retain(|_, (_, exp)| *exp > now);
        if links.len() >= MAX_LINKS {
            links.clear();
        }
        links.insert(secret.clone(), (role, now + LINK_TTL));
        secret
    }

    /// The role a link grants, spent by this call.
    pub fn redeem(&self, secret: &str) -> Option<Role> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        match links.remove(secret) {
            Some((role, exp)) if exp > Instant::now() => Some(role),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_one_session_only() {
        let s = Sessions::default();
        let link = s.link(Role::Admin);
        assert_eq!(s.redeem(&link), Some(Role::Admin));
        assert_eq!(s.redeem(&link), None);
        assert_eq!(s.redeem("not-a-link"), None);
    }

    #[test]
    fn a_closed_session_is_gone_and_each_has_its_own_csrf_token() {
        let s = Sessions::default();
        let (a, sa) = s.open(Role::Admin);
        let (b, sb) = s.open(Role::ReadOnly);
        assert_ne!(sa.csrf, sb.csrf);
        assert_eq!(s.get(&b).unwrap().role, Role::ReadOnly);
        s.close(&a);
        assert!(s.get(&a).is_none());
        assert!(s.get(&b).is_some());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let (first, _) = s.open(Role::Admin);
        for _ in 0..MAX_SESSIONS {
            s.open(Role::Admin);
        }
        assert!(s.get(&first).is_none(), "the oldest session made room");
        assert!(s.by_id.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
