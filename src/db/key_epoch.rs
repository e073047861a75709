//! Whether API keys changed since a moment: the `key_epoch` counter that triggers on
//! `api_key` bump, whoever changes a key (the `keys` command, another process, an
//! operator's SQL). While it stays put, what a server learned about a key still holds.
//! Read on SQLite through a connection of its own, in place: a one-row read of a few
//! microseconds, with no hand-off to a pool's thread. Elsewhere (PostgreSQL, where any
//! read is a round trip; in-memory SQLite, which no second connection sees) it cannot be
//! read cheaply, and callers ask the database itself.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Past this, a locked database answers "cannot tell" rather than stall a request.
const SQLITE_BUSY_WAIT: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, Default)]
pub struct KeyEpoch {
    /// `None` where the counter cannot be read cheaply.
    sqlite: Option<Arc<Mutex<rusqlite::Connection>>>,
    /// Reads made, for `/metrics`: statements too, though not sent through a pool.
    checks: Arc<AtomicU64>,
}

impl KeyEpoch {
    /// Reads the counter in the SQLite file at `path`, which must be migrated.
    pub fn sqlite(path: &Path) -> rusqlite::Result<Self> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(SQLITE_BUSY_WAIT)?;
        conn.pragma_update(None, "query_only", true)?;
        let epoch = Self {
            sqlite: Some(Arc::new(Mutex::new(conn))),
            checks: Arc::default(),
        };
        // Fails here, at start, if the table is missing.
        epoch.read()?;
        Ok(epoch)
    }

    /// The current epoch, or `None` when it cannot be known cheaply.
    pub fn current(&self) -> Option<u64> {
        self.read().ok().flatten()
    }

    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    fn read(&self) -> rusqlite::Result<Option<u64>> {
        let Some(conn) = &self.sqlite else {
            return Ok(None);
        };
        self.checks.fetch_add(1, Ordering::Relaxed);
        let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        let epoch: i64 = conn
            .prepare_cached("SELECT epoch FROM key_epoch WHERE id = 1")?
            .query_row([], |row| row.get(0))?;
        Ok(Some(epoch as u64))
    }
}
