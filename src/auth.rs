//! API keys: scopes, product restrictions, and turning a presented key into an
//! `Access`. Keys are random, shown once, stored as SHA-256 hashes, found by a short
//! prefix and compared in constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::db::entities::api_key;
use crate::db::{Db, store};
use crate::error::{AppError, AppResult};

const KEY_PREFIX: &str = "tg_";
/// Characters of a key kept in clear to find its row: the `tg_` and 9 of its 64 hex digits.
const LOOKUP_CHARS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// Write traces and spans.
    Ingest,
    /// Queries and subscriptions.
    Read,
    /// Everything, including flags.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Ingest, Self::Read, Self::Admin]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Who is asking. `Open` only when no key exists and the server listens on loopback.
#[derive(Debug, Clone, Default)]
pub enum Access {
    #[default]
    Open,
    Key(KeyAccess),
}

#[derive(Debug, Clone)]
pub struct KeyAccess {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub products: Option<Vec<Uuid>>,
}

impl Access {
    pub fn require(&self, scope: Scope) -> AppResult<()> {
        match self {
            Self::Open => Ok(()),
            Self::Key(k) if k.scopes.contains(&Scope::Admin) || k.scopes.contains(&scope) => Ok(()),
            Self::Key(k) => Err(AppError::Forbidden(format!(
                "key {:?} lacks the {} scope",
                k.name,
                scope.as_str()
            ))),
        }
    }

    /// The products this access is limited to; `None` for all.
    pub fn products(&self) -> Option<&[Uuid]> {
        match self {
            Self::Open => None,
            Self::Key(k) => k.products.as_deref(),
        }
    }

    /// Refuses a record of a product outside the key's (a product-less record included).
    pub fn check_product(&self, product: Option<Uuid>) -> AppResult<()> {
        match self.products() {
            None => Ok(()),
            Some(allowed) if product.is_some_and(|p| allowed.contains(&p)) => Ok(()),
            Some(_) => Err(AppError::Forbidden("this key may not access that product".into())),
        }
    }

    /// For a list filter: refuses another product, or returns the products to force
    /// when the filter names none.
    pub fn restrict(&self, requested: Option<Uuid>) -> AppResult<Option<Vec<Uuid>>> {
        match (self.products(), requested) {
            (None, _) => Ok(None),
            (Some(_), Some(p)) => self.check_product(Some(p)).map(|()| None),
            (Some(allowed), None) => Ok(Some(allowed.to_vec())),
        }
    }

    pub fn key_name(&self) -> Option<&str> {
        match self {
            Self::Open => None,
            Self::Key(k) => Some(&k.name),
        }
    }
}

pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The longest name a key may have, in characters: a name is read in listings.
pub const MAX_KEY_NAME_CHARS: usize = 64;

/// A key's name as given to `keys create`: some visible text, one line, that a listing
/// can show whole.
pub fn key_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("a key needs a name".into());
    }
    if text.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(format!("at most {MAX_KEY_NAME_CHARS} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("no control characters (line breaks, tabs)".into());
    }
    Ok(text.to_owned())
}

/// A new key row and the key itself, which is never stored.
pub fn generate(name: &str, scopes: &[Scope], products: Option<Vec<Uuid>>) -> (api_key::Model, String) {
    let key = format!("{KEY_PREFIX}{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let row = api_key::Model {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        prefix: key[..LOOKUP_CHARS].to_owned(),
        key_hash: hash(&key),
        scopes: scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        products: products.map(|p| serde_json::json!(p)),
        created_at: chrono::Utc::now(),
        revoked_at: None,
    };
    (row, key)
}

fn access_of(row: &api_key::Model) -> Access {
    let products = row
        .products
        .as_ref()
        .and_then(|v| serde_json::from_value::<Vec<Uuid>>(v.clone()).ok());
    Access::Key(KeyAccess {
        id: row.id,
        name: row.name.clone(),
        scopes: row.scopes.split(',').filter_map(Scope::parse).collect(),
        products,
    })
}

/// The value of `Authorization: Bearer <key>`, or of a bare key.
pub fn bearer(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    }
}

/// Open WebSockets per key id.
type SocketCounts = Arc<Mutex<HashMap<Uuid, usize>>>;

/// Active keys remembered past this many are forgotten, all at once: only keys that
/// exist are remembered, so this bounds memory against an odd deployment, not guessing.
const MAX_REMEMBERED_KEYS: usize = 1024;

/// What the database said about keys while `key_epoch` read `epoch`; valid until it moves.
#[derive(Debug, Default)]
struct Learned {
    epoch: u64,
    any_active: Option<bool>,
    /// Access by the hash of a presented key. Rejected keys are never kept.
    by_hash: HashMap<String, Access>,
}

/// Resolves keys against the database, and counts each key's open WebSockets.
#[derive(Clone)]
pub struct Auth {
    db: Db,
    max_ws_per_key: usize,
    open_sockets: SocketCounts,
    learned: Arc<Mutex<Learned>>,
}

impl Auth {
    pub fn new(db: Db, max_ws_per_key: usize) -> Self {
        Self {
            db,
            max_ws_per_key,
            open_sockets: Arc::default(),
            learned: Arc::default(),
        }
    }

    /// What the database says now: a revoked key stops working at once, and the first
    /// key created turns authentication on. The database is asked again only when the
    /// key change counter has moved (or cannot be read).
    pub async fn resolve(&self, presented: Option<&str>) -> AppResult<Access> {
        // Read before the database: a change racing the lookup moves it past this value.
        let epoch = self.db.key_epoch.current();
        let Some(key) = presented.map(bearer).filter(|k| !k.is_empty()) else {
            let any_active = match self.recall(epoch, |l| l.any_active) {
                Some(known) => known,
                None => {
                    let any_active = store::keys::any_active(&self.db.read).await?;
                    self.learn(epoch, |l| l.any_active = Some(any_active));
                    any_active
                }
            };
            if any_active {
                return Err(AppError::Unauthenticated(
                    "an API key is required: send `Authorization: Bearer <key>`".into(),
                ));
            }
            return Ok(Access::Open);
        };
        let invalid = || AppError::Unauthenticated("invalid or revoked API key".into());
        let lookup = key.get(..LOOKUP_CHARS).ok_or_else(invalid)?;
        let presented_hash = hash(key);
        if let Some(access) = self.recall(epoch, |l| l.by_hash.get(&presented_hash).cloned()) {
            return Ok(access);
        }
        let candidates = store::keys::active_by_prefix(&self.db.read, lookup).await?;
        let access = candidates
            .iter()
            .find(|row| bool::from(row.key_hash.as_bytes().ct_eq(presented_hash.as_bytes())))
            .map(access_of)
            .ok_or_else(invalid)?;
        self.learn(epoch, |l| {
            if l.by_hash.len() >= MAX_REMEMBERED_KEYS {
                l.by_hash.clear();
            }
            l.by_hash.insert(presented_hash, access.clone());
        });
        Ok(access)
    }

    /// Whether a key seen earlier is still active (for long-lived connections).
    pub async fn still_active(&self, access: &Access) -> bool {
        let Access::Key(k) = access else {
            return true;
        };
        let epoch = self.db.key_epoch.current();
        let remembered = |l: &Learned| {
            l.by_hash
                .values()
                .any(|a| matches!(a, Access::Key(known) if known.id == k.id))
                .then_some(())
        };
        if self.recall(epoch, remembered).is_some() {
            return true;
        }
        // A database hiccup does not cut live feeds; the next check decides.
        store::keys::is_active(&self.db.read, k.id).await.unwrap_or(true)
    }

    fn recall<T>(&self, epoch: Option<u64>, read: impl FnOnce(&Learned) -> Option<T>) -> Option<T> {
        let epoch = epoch?;
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if learned.epoch == epoch { read(&learned) } else { None }
    }

    /// Records what the database said at `epoch`; a newer epoch forgets the rest, an
    /// older one (a request that started before a change) records nothing.
    fn learn(&self, epoch: Option<u64>, write: impl FnOnce(&mut Learned)) {
        let Some(epoch) = epoch else {
            return;
        };
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if epoch > learned.epoch {
            *learned = Learned {
                epoch,
                ..Learned::default()
            };
        }
        if epoch == learned.epoch {
            write(&mut learned);
        }
    }

    /// Takes a WebSocket slot for the key, refused past the per-key limit.
    pub fn open_socket(&self, access: &Access) -> AppResult<SocketSlot> {
        let Access::Key(k) = access else {
            return Ok(SocketSlot { release: None });
        };
        let mut open = self.open_sockets.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(k.id).or_default();
        AppError::within(
            "connection_init",
            "WebSocket connections per key",
            *count + 1,
            self.max_ws_per_key,
        )?;
        *count += 1;
        Ok(SocketSlot {
            release: Some((self.open_sockets.clone(), k.id)),
        })
    }
}

/// An open WebSocket counted against its key; dropping it frees the slot.
pub struct SocketSlot {
    release: Option<(SocketCounts, Uuid)>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Some((open, id)) = self.release.take() {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = open.get_mut(&id) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_accepts_the_scheme_in_any_case_or_none() {
        assert_eq!(bearer("Bearer tg_abc"), "tg_abc");
        assert_eq!(bearer("bearer  tg_abc "), "tg_abc");
        assert_eq!(bearer("tg_abc"), "tg_abc");
    }

    #[test]
    fn generated_keys_are_distinct_and_hashed() {
        let (row, key) = generate("k", &[Scope::Read], None);
        let (_, other) = generate("k2", &[Scope::Read], None);
        assert_ne!(key, other);
        assert!(key.starts_with(KEY_PREFIX) && key.len() == 67);
        assert_eq!(row.key_hash, hash(&key));
        assert!(!row.key_hash.contains(&key[LOOKUP_CHARS..]));
    }

    #[test]
    fn product_rules() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let access = Access::Key(KeyAccess {
            id: Uuid::nil(),
            name: "k".into(),
            scopes: vec![Scope::Read],
            products: Some(vec![a]),
        });
        assert!(access.check_product(Some(a)).is_ok());
        assert!(access.check_product(Some(b)).is_err());
        assert!(access.check_product(None).is_err());
        assert_eq!(access.restrict(None).unwrap(), Some(vec![a]));
        assert_eq!(access.restrict(Some(a)).unwrap(), None);
        assert!(access.restrict(Some(b)).is_err());
        assert!(access.require(Scope::Ingest).is_err());
        assert!(access.require(Scope::Read).is_ok());
        assert!(Access::Open.require(Scope::Admin).is_ok());
    }
}
