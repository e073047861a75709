//! What PostgreSQL tells a server instance, on one listening connection:
//! - Live events of the other instances. A write sends a NOTIFY inside its own
//!   transaction, so PostgreSQL delivers it only on commit, in commit order; the payload
//!   carries ids only (NOTIFY payloads are limited to 8000 bytes), and each other
//!   instance reads the rows and publishes them to its own subscribers. An instance
//!   ignores its own notifications: it published locally.
//! - API-key changes: each bump of `key_epoch` is announced by trigger; the
//!   announcement makes the listener read the counter and pass it to the `KeyEpoch`.
//!   While the connection is down the counter is forgotten, so no key answer is
//!   reused on a change that could not be heard.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::Notify;
use uuid::Uuid;

use super::LiveSpans;
use crate::db::key_epoch::{self, KeyEpoch};
use crate::db::{Db, store};
use crate::error::AppResult;

pub const CHANNEL: &str = "tracegraph_live";
/// The listening connection's `application_name`.
pub const LISTENER_NAME: &str = "tracegraph live relay";
/// Ids per notification: 200 × 37 bytes, with the tag and instance, stays below the
/// 8000-byte payload limit.
const IDS_PER_NOTIFY: usize = 200;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// With no notification for this long, the listening connection is asked for the key
/// counter: a connection that died silently is found, and a missed change is caught,
/// within about twice this.
const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SpansAdded,
    SpanUpdated,
    TraceEnded,
}

impl EventKind {
    fn tag(self) -> &'static str {
        match self {
            Self::SpansAdded => "added",
            Self::SpanUpdated => "updated",
            Self::TraceEnded => "ended",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        [Self::SpansAdded, Self::SpanUpdated, Self::TraceEnded]
            .into_iter()
            .find(|k| k.tag() == tag)
    }
}

/// This instance's identity on the channel.
#[derive(Debug, Clone)]
pub struct Relay {
    instance: Uuid,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new()
    }
}

impl Relay {
    pub fn new() -> Self {
        Self {
            instance: Uuid::new_v4(),
        }
    }

    /// Queues notifications for `ids` in the caller's transaction, in one statement
    /// (one round trip, however many notifications the ids take).
    pub async fn notify(&self, txn: &impl ConnectionTrait, kind: EventKind, ids: &[Uuid]) -> AppResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = ids
            .chunks(IDS_PER_NOTIFY)
            .map(|chunk| {
                let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
                format!("{} {} {}", kind.tag(), self.instance, ids.join(","))
            })
            .collect();
        let calls: Vec<String> = (0..payloads.len())
            .map(|i| format!("pg_notify($1, ${})", i + 2))
            .collect();
        let values = std::iter::once(CHANNEL.to_owned()).chain(payloads).map(Into::into);
        let stmt = Statement::from_sql_and_values(DbBackend::Postgres, format!("SELECT {}", calls.join(", ")), values);
        txn.execute_raw(stmt).await?;
        Ok(())
    }
}

/// The relay's task, and the way to end it cleanly.
pub struct Bridge {
    task: tokio::task::JoinHandle<()>,
    stop: Arc<Notify>,
}

impl Bridge {
    /// Ends the relay: its listening connection stops listening and is closed with a
    /// Terminate message (dropped, it would be logged by PostgreSQL as a connection lost).
    pub async fn stop(mut self) {
        self.stop.notify_one();
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// How long the relay gets to close its connection at shutdown.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Listens for the other instances' events and for key changes. The first LISTEN is
/// done, and the key counter read, before this returns, so the instance hears every
/// event committed after it starts; a lost connection is re-established (events
/// committed while it is down are not replayed).
pub async fn spawn_bridge(url: String, db: Db, live: LiveSpans) -> Result<Bridge, sea_orm::DbErr> {
    let relay = live.relay.clone().unwrap_or_default();
    let keys = db.key_epoch.clone();
    let first = connect(&url, &keys)
        .await
        .map_err(|e| sea_orm::DbErr::Custom(format!("live relay: {e}")))?;
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut connected = Some(first);
        loop {
            let result = match connected.as_mut() {
                Some((_, listener)) => tokio::select! {
                    () = stopped.notified() => break,
                    result = serve(listener, &db, &live, &relay) => result,
                },
                None => tokio::select! {
                    () = stopped.notified() => break,
                    fresh = connect(&url, &keys) => fresh.map(|fresh| connected = Some(fresh)),
                },
            };
            if let Err(e) = result {
                // The connection is gone or never came: nothing to end cleanly.
                connected = None;
                keys.deafen();
                tracing::warn!(error = %e, "live relay disconnected; reconnecting");
                tokio::select! {
                    () = stopped.notified() => break,
                    () = tokio::time::sleep(RECONNECT_DELAY) => {}
                }
            }
        }
        keys.deafen();
        if let Some((pool, listener)) = connected {
            // The listener stops listening and hands its connection back; the pool then
            // ends it with a Terminate message.
            drop(listener);
            pool.close().await;
        }
    });
    Ok(Bridge { task, stop })
}

/// The listening connection, in a pool of its own.
type Listening = (PgPool, PgListener);

async fn connect(url: &str, keys: &KeyEpoch) -> Result<Listening, sea_orm::sqlx::Error> {
    let options = url.parse::<PgConnectOptions>()?.application_name(LISTENER_NAME);
    // A pool of one, without timeouts: the listener's own connection, named for
    // `pg_stat_activity`.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection ends `serve`, which reconnects after forgetting the key counter.
    listener.eager_reconnect(false);
    listener.listen_all([CHANNEL, key_epoch::CHANNEL]).await?;
    // After LISTEN: a change committed meanwhile is in this read or announced after it.
    keys.hear(read_key_epoch(&mut listener).await?);
    Ok((pool, listener))
}

async fn read_key_epoch(listener: &mut PgListener) -> Result<u64, sea_orm::sqlx::Error> {
    let read = sea_orm::sqlx::query_scalar::<_, i64>(key_epoch::READ).fetch_one(listener);
    match tokio::time::timeout(HEARTBEAT, read).await {
        Ok(epoch) => Ok(epoch? as u64),
        Err(_) => Err(sea_orm::sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the listening connection did not answer",
        ))),
    }
}

async fn serve(
    listener: &mut PgListener,
    db: &Db,
    live: &LiveSpans,
    relay: &Relay,
) -> Result<(), sea_orm::sqlx::Error> {
    let mut checked = Instant::now();
    loop {
        let quiet_for = HEARTBEAT.saturating_sub(checked.elapsed());
        // `try_recv` is cancel-safe: a message half read stays buffered for the next call.
        match tokio::time::timeout(quiet_for, listener.try_recv()).await {
            // A quiet second, or a key change: the counter is read below. A key change's
            // payload is not believed: any client of the database may NOTIFY the channel,
            // and a forged high value would freeze what the server remembers.
            Err(_quiet) => {}
            Ok(Ok(Some(n))) if n.channel() == key_epoch::CHANNEL => {}
            Ok(Ok(Some(n))) => {
                relay_event(db, live, relay, n.payload()).await;
                continue;
            }
            // Reconnecting here would hide the gap: end, so the counter is forgotten first.
            Ok(Ok(None)) => return Err(sea_orm::sqlx::Error::Protocol("listening connection lost".into())),
            Ok(Err(e)) => return Err(e),
        }
        db.key_epoch.hear(read_key_epoch(listener).await?);
        checked = Instant::now();
    }
}

/// Publishes another instance's event here; an instance's own events were published
/// locally already.
async fn relay_event(db: &Db, live: &LiveSpans, relay: &Relay, payload: &str) {
    let Some((kind, instance, ids)) = parse(payload) else {
        tracing::warn!(payload, "unreadable live notification");
        return;
    };
    if instance == relay.instance {
        return;
    }
    if let Err(e) = republish(db, live, kind, ids).await {
        tracing::error!(error = %e, "cannot read a relayed live event");
    }
}

fn parse(payload: &str) -> Option<(EventKind, Uuid, Vec<Uuid>)> {
    let mut parts = payload.splitn(3, ' ');
    let kind = EventKind::from_tag(parts.next()?)?;
    let instance = parts.next()?.parse().ok()?;
    let ids = parts
        .next()?
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<Uuid>, _>>()
        .ok()?;
    Some((kind, instance, ids))
}

async fn republish(db: &Db, live: &LiveSpans, kind: EventKind, ids: Vec<Uuid>) -> AppResult<()> {
    match kind {
        EventKind::SpansAdded | EventKind::SpanUpdated => {
            let mut rows: HashMap<Uuid, _> = store::spans::by_ids(&db.read, ids.iter().copied())
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
            // Keep the writer's order.
            let ordered: Vec<_> = ids.iter().filter_map(|id| rows.remove(id)).collect();
            if kind == EventKind::SpansAdded {
                live.publish_added(ordered.into_iter().map(Arc::new));
            } else {
                ordered.iter().for_each(|s| live.publish_updated(s));
            }
        }
        EventKind::TraceEnded => {
            for trace in store::traces::by_ids(&db.read, ids).await? {
                live.publish_trace_ended(&trace);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let (instance, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let payload = format!("added {instance} {a},{b}");
        assert_eq!(parse(&payload), Some((EventKind::SpansAdded, instance, vec![a, b])));
        assert_eq!(parse("bogus x y"), None);
        assert_eq!(parse(&format!("ended {instance} not-a-uuid")), None);
    }
}
