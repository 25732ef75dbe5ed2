//! The PostgreSQL backend: one table per [`Table`], each batch one transaction (ADR 0052).
//!
//! The [`Store`] trait is synchronous and is called from the engine's blocking threads and
//! from async handlers alike. The driver is async, so the store runs it on a small runtime
//! of its own and each call waits for its answer: a call never nests one runtime in
//! another, whatever thread makes it, and blocks its caller as a sled read of the disk does.

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{prefix_end, Entry, Op, Store, StoreError, StoreStats, Table, WriteBatch};

/// The schema this build reads and writes. `revsync migrate` brings a database to it.
pub const SCHEMA_VERSION: i32 = 1;

/// Taken for the length of a migration, so replicas started together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x7265_7673_796e_6301;

/// Each version's statements, in order: `MIGRATIONS[n]` takes a database from `n` to `n+1`.
fn migrations() -> Vec<Vec<String>> {
    let mut v1 = vec![
        "CREATE TABLE IF NOT EXISTS revsync_schema (version integer NOT NULL)".to_owned(),
        "INSERT INTO revsync_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM revsync_schema)".to_owned(),
    ];
    for t in Table::ALL {
        // bytea compares byte by byte, shorter first on a common prefix: the order of
        // sled's keys, which the engine's key layouts rely on.
        v1.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (k bytea PRIMARY KEY, v bytea NOT NULL)",
            table_name(t)
        ));
    }
    vec![v1]
}

fn table_name(t: Table) -> String {
    format!("revsync_{}", t.name())
}

/// Where a store is, for messages and `/status`: host, port and database, never the
/// user's password.
fn describe(cfg: &tokio_postgres::Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let db = cfg.get_dbname().or(cfg.get_user()).unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

/// Parse a connection URL or key=value string; the error never repeats the input.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    tokio_postgres::Config::from_str(url).map_err(|e| {
        // The driver's message names the part it could not read, not the value.
        format!("not a PostgreSQL connection string ({e})")
    })
}

fn pg(e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres(e.to_string())
}

/// One table's share of a batch: keys and values to upsert, keys to delete.
type TableWrites = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Held by the one active daemon of a database (ADR 0052).
const DAEMON_LOCK: i64 = 0x7265_7673_796e_6302;

pub struct PgStore {
    /// `None` only while dropping: the runtime is shut down without blocking.
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    cfg: tokio_postgres::Config,
    target: String,
    size_on_disk: AtomicU64,
    /// The connection holding [`DAEMON_LOCK`], once taken: the lock goes with it.
    daemon_lock: std::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Set when the store is dropped: the lock connection closing then is no loss.
    closing: Arc<AtomicBool>,
}

impl PgStore {
    /// Connect to the database at `url`, with at most `pool_size` connections. Refuses a
    /// schema older or newer than [`SCHEMA_VERSION`], saying what to run.
    pub fn open(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let store = Self::connect(url, pool_size)?;
        let version = store.schema_version()?;
        if version != SCHEMA_VERSION {
            let what = if version < SCHEMA_VERSION {
                "run `revsync migrate` (with the same configuration) to bring it up to date"
            } else {
                "it was written by a newer revsync; run that version"
            };
            return Err(StoreError::Unusable(format!(
                "the PostgreSQL store at {} has schema version {version}, this revsync needs {SCHEMA_VERSION}: {what}",
                store.target
            )));
        }
        Ok(store)
    }

    /// Where `url` points, for messages: host, port and database, never the password.
    pub fn describe_url(url: &str) -> String {
        parse_url(url).map_or_else(|_| "a PostgreSQL store".to_owned(), |c| describe(&c))
    }

    /// Bring the database at `url` to [`SCHEMA_VERSION`]; returns (from, to). Safe to run
    /// from several processes at once, and again: each step runs once.
    pub fn migrate(url: &str) -> Result<(i32, i32), StoreError> {
        let store = Self::connect(url, 1)?;
        let pool = store.pool.clone();
        store.run(async move {
            let mut client = pool.get().await.map_err(pg)?;
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(pg)?;
            let exists: bool = tx
                .query_one("SELECT to_regclass('revsync_schema') IS NOT NULL", &[])
                .await
                .map_err(pg)?
                .get(0);
            let from: i32 = if exists {
                tx.query_one("SELECT version FROM revsync_schema", &[])
                    .await
                    .map_err(pg)?
                    .get(0)
            } else {
                0
            };
            if from > SCHEMA_VERSION {
                return Err(StoreError::Unusable(format!(
                    "the store has schema version {from}, newer than this revsync's {SCHEMA_VERSION}"
                )));
            }
            let steps = migrations();
            for step in steps
                .iter()
                .skip(usize::try_from(from).unwrap_or(usize::MAX))
            {
                for sql in step {
                    tx.batch_execute(sql).await.map_err(pg)?;
                }
            }
            tx.execute("UPDATE revsync_schema SET version = $1", &[&SCHEMA_VERSION])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok((from, SCHEMA_VERSION))
        })
    }

    fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let cfg = parse_url(url).map_err(StoreError::Unusable)?;
        let target = describe(&cfg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("revsync-pg")
            .enable_all()
            .build()
            .map_err(|e| pg(format!("starting the store's runtime: {e}")))?;
        let manager = Manager::from_config(
            cfg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _entered = rt.enter();
            Pool::builder(manager)
                .max_size(pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(std::time::Duration::from_secs(30)))
                .create_timeout(Some(std::time::Duration::from_secs(10)))
                .build()
                .map_err(pg)?
        };
        let store = Self {
            rt: Some(rt),
            pool,
            cfg,
            target,
            size_on_disk: AtomicU64::new(0),
            daemon_lock: std::sync::Mutex::new(None),
            closing: Arc::new(AtomicBool::new(false)),
        };
        // Connect now: a wrong address or password is an error at start, not at first use.
        let pool = store.pool.clone();
        let target = store.target.clone();
        store.run(async move {
            pool.get()
                .await
                .map(drop)
                .map_err(|e| StoreError::Postgres(format!("cannot connect to {target}: {e}")))
        })?;
        Ok(store)
    }

    /// Take the database for this daemon: two daemons on one database would push the same
    /// outbox, so one is active at a time (ADR 0052). The lock lives with a connection of
    /// its own and goes with it: a daemon killed, or whose machine is gone (the server's
    /// keepalives find that within about 25 s), frees it, and a standby takes over. A
    /// paused daemon keeps it, so nothing runs twice. Should this daemon's own lock
    /// connection ever close while it runs, it exits at once: another may already have
    /// taken over, and it must not write beside it.
    ///
    /// `false`: another daemon holds it (the caller may wait as a standby and ask again).
    pub fn try_hold_for_daemon(&self) -> Result<bool, StoreError> {
        match self.try_hold()? {
            Some(client) => {
                if let Ok(mut held) = self.daemon_lock.lock() {
                    *held = Some(client);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`PgStore::try_hold_for_daemon`], refused when another daemon holds the store.
    pub fn hold_for_daemon(&self) -> Result<(), StoreError> {
        if self.try_hold_for_daemon()? {
            return Ok(());
        }
        Err(StoreError::Unusable(format!(
            "another revsync daemon already runs on the PostgreSQL store at {}: one daemon per database is active (ADR 0052)",
            self.target
        )))
    }

    /// The lock's connection if the lock was free.
    fn try_hold(&self) -> Result<Option<tokio_postgres::Client>, StoreError> {
        let cfg = self.cfg.clone();
        let target = self.target.clone();
        let closing = self.closing.clone();
        self.run(async move {
            let (client, conn) = cfg.connect(NoTls).await.map_err(pg)?;
            let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let _ = conn.await;
                let _ = closed_tx.send(());
            });
            // The server notices a vanished peer by its own keepalives (2 h by default).
            client
                .batch_execute(
                    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
                )
                .await
                .map_err(pg)?;
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&DAEMON_LOCK])
                .await
                .map_err(pg)?
                .get(0);
            if !got {
                return Ok(None);
            }
            tokio::spawn(async move {
                let _ = closed_rx.await;
                if closing.load(Ordering::SeqCst) {
                    return;
                }
                tracing::error!(store = %target, "lost the connection that holds this daemon's lock on the PostgreSQL store: exiting, so that a replica taking over never runs beside this one");
                std::process::exit(i32::from(crate::cli::exit::FAILURE));
            });
            Ok(Some(client))
        })
    }

    fn schema_version(&self) -> Result<i32, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pg)?;
            let exists: bool = client
                .query_one("SELECT to_regclass('revsync_schema') IS NOT NULL", &[])
                .await
                .map_err(pg)?
                .get(0);
            if !exists {
                return Ok(0);
            }
            let row = client
                .query_opt("SELECT version FROM revsync_schema", &[])
                .await
                .map_err(pg)?;
            Ok(row.map_or(0, |r| r.get(0)))
        })
    }

    /// Run `work` on the store's runtime and wait for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(pg("the store is closed"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv().map_err(|_| pg("the store's runtime stopped"))?
    }

    /// The rows of `table` from `lo` (inclusive, or exclusive after `after`) below `hi`.
    fn range(
        &self,
        table: Table,
        lo: (Vec<u8>, bool),
        hi: Option<Vec<u8>>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (lo, exclusive) = lo;
        let sql = format!(
            "SELECT k, v FROM {} WHERE k {} $1{} ORDER BY k {} LIMIT $2",
            table_name(table),
            if exclusive { ">" } else { ">=" },
            if hi.is_some() { " AND k < $3" } else { "" },
            if descending { "DESC" } else { "ASC" },
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pg)?;
            let stmt = client.prepare_cached(&sql).await.map_err(pg)?;
            let rows = match &hi {
                Some(hi) => client.query(&stmt, &[&lo, &limit, hi]).await,
                None => client.query(&stmt, &[&lo, &limit]).await,
            }
            .map_err(pg)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Dropping a runtime blocks, which panics on an async thread: let it go instead.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Store for PgStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = format!("SELECT v FROM {} WHERE k = $1", table_name(table));
        let key = key.to_vec();
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pg)?;
            let stmt = client.prepare_cached(&sql).await.map_err(pg)?;
            let row = client.query_opt(&stmt, &[&key]).await.map_err(pg)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let lo = match after {
            Some(a) if a >= prefix => (a.to_vec(), true),
            _ => (prefix.to_vec(), false),
        };
        self.range(table, lo, prefix_end(prefix), limit, false)
    }

    fn scan_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let end = prefix_end(prefix);
        let hi = match (before, end) {
            (Some(b), Some(e)) => Some(if b < e.as_slice() { b.to_vec() } else { e }),
            (Some(b), None) => Some(b.to_vec()),
            (None, e) => e,
        };
        self.range(table, (prefix.to_vec(), false), hi, limit, true)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        // The last operation on a key is the one that counts: applied all at once, the
        // batch ends as if its operations ran in order.
        let mut last: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
        for op in batch.into_ops() {
            match op {
                Op::Put(t, k, v) => last.insert((t, k), Some(v)),
                Op::Delete(t, k) => last.insert((t, k), None),
            };
        }
        if last.is_empty() {
            return Ok(());
        }
        let mut per_table: BTreeMap<Table, TableWrites> = BTreeMap::new();
        for ((t, k), v) in last {
            let (pk, pv, del) = per_table.entry(t).or_default();
            match v {
                Some(v) => {
                    pk.push(k);
                    pv.push(v);
                }
                None => del.push(k),
            }
        }
        let pool = self.pool.clone();
        self.run(async move {
            let mut client = pool.get().await.map_err(pg)?;
            let tx = client.transaction().await.map_err(pg)?;
            for (t, (keys, values, deletes)) in per_table {
                let name = table_name(t);
                if !deletes.is_empty() {
                    let sql = format!("DELETE FROM {name} WHERE k = ANY($1)");
                    let stmt = tx.prepare_cached(&sql).await.map_err(pg)?;
                    tx.execute(&stmt, &[&deletes]).await.map_err(pg)?;
                }
                if !keys.is_empty() {
                    let sql = format!(
                        "INSERT INTO {name} (k, v) SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
                         ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                    );
                    let stmt = tx.prepare_cached(&sql).await.map_err(pg)?;
                    tx.execute(&stmt, &[&keys, &values]).await.map_err(pg)?;
                }
            }
            tx.commit().await.map_err(pg)
        })
    }

    /// A committed transaction is already durable (PostgreSQL's `synchronous_commit`).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn refresh_stats(&self) {
        let pool = self.pool.clone();
        let names: Vec<String> = Table::ALL.iter().map(|t| table_name(*t)).collect();
        let size = self.run(async move {
            let client = pool.get().await.map_err(pg)?;
            let row = client
                .query_one(
                    "SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(n))), 0)::bigint FROM UNNEST($1::text[]) AS n",
                    &[&names],
                )
                .await
                .map_err(pg)?;
            Ok(row.get::<_, i64>(0))
        });
        if let Ok(size) = size {
            self.size_on_disk
                .store(u64::try_from(size).unwrap_or(0), Ordering::Relaxed);
        }
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            backend: "postgres",
            path: self.target.clone(),
            size_on_disk_bytes: self.size_on_disk.load(Ordering::Relaxed),
            flushes: 0,
            last_flush_ms: None,
        }
    }
}
