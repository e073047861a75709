//! Loads NDJSON data sets (`{"kind":"trace",...}` then its `{"kind":"span",...}`
//! lines) through the same validation and store code as the API, a batch of whole
//! traces per transaction. Every write is idempotent, so an import can be repeated
//! or resumed after a failure.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use async_graphql::Json;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::Limits;
use crate::db::{Db, store};
use crate::error::AppError;
use crate::ingest::{self, NewSpan, NewTrace, SpanDraft, TraceDraft, TraceEnd};
use crate::live::LiveSpans;
use crate::model::SpanType;
use crate::prices::Prices;
use crate::write;

pub const DEFAULT_BATCH_TRACES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("writing the batch ending at line {line}: {source}")]
    Write { line: usize, source: AppError },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub traces: usize,
    pub spans: usize,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Trace {
        id: Uuid,
        name: String,
        agent: Option<Uuid>,
        product_id: Option<Uuid>,
        started_at: DateTime<Utc>,
        ended_at: Option<DateTime<Utc>>,
        error: Option<String>,
        metadata: Option<Value>,
    },
    Span {
        trace_id: Uuid,
        id: Uuid,
        parent: Option<Uuid>,
        name: String,
        span_type: String,
        started_at: DateTime<Utc>,
        ended_at: Option<DateTime<Utc>>,
        input_text: Option<String>,
        output_text: Option<String>,
        error: Option<String>,
        metadata: Option<Value>,
    },
}

/// A trace is written open, its spans added, then it is ended, so its usage record
/// sums its spans as an agent's own `endTrace` would.
struct PendingTrace {
    trace: NewTrace,
    end: Option<(DateTime<Utc>, Option<String>)>,
}

#[derive(Default)]
struct Batch {
    traces: Vec<PendingTrace>,
    spans: Vec<NewSpan>,
}

pub async fn import_file(
    db: &Db,
    limits: &Limits,
    prices: &Prices,
    path: &Path,
    batch_traces: usize,
) -> Result<Report, ImportError> {
    let io_err = |source| ImportError::Io {
        path: path.display().to_string(),
        source,
    };
    let (reader, size): (Box<dyn Read>, u64) = if path.as_os_str() == "-" {
        (Box::new(std::io::stdin()), 0)
    } else {
        let file = std::fs::File::open(path).map_err(io_err)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(file), size)
    };
    // indicatif draws nothing when stderr is not a terminal.
    let progress = ProgressBar::new(size);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}").unwrap_or(ProgressStyle::default_bar()),
    );
    let report = import_lines(db, limits, prices, progress.wrap_read(reader), batch_traces, |r| {
        progress.set_message(format!("{} traces, {} spans", r.traces, r.spans));
    })
    .await;
    progress.finish_and_clear();
    report
}

pub async fn import_lines(
    db: &Db,
    limits: &Limits,
    prices: &Prices,
    reader: impl Read,
    batch_traces: usize,
    on_batch: impl Fn(&Report),
) -> Result<Report, ImportError> {
    // On PostgreSQL the imported spans reach the subscribers of running servers.
    let mut live = LiveSpans::default();
    if db.backend() == sea_orm::DbBackend::Postgres {
        live = live.relayed();
    }
    let mut report = Report::default();
    let mut batch = Batch::default();
    let mut last_line = 0;
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let number = index + 1;
        last_line = number;
        let line = line.map_err(|e| ImportError::Line {
            line: number,
            reason: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| ImportError::Line {
            line: number,
            reason: e.to_string(),
        })?;
        if matches!(record, Record::Trace { .. }) && batch.traces.len() >= batch_traces {
            flush(db, &live, std::mem::take(&mut batch), number - 1, &mut report).await?;
            on_batch(&report);
        }
        add(&mut batch, record, limits, prices).map_err(|e| ImportError::Line {
            line: number,
            reason: e.to_string(),
        })?;
    }
    flush(db, &live, batch, last_line, &mut report).await?;
    if let Err(e) = db.analyze().await {
        tracing::warn!(error = %e, "could not refresh planner statistics after the import");
    }
    on_batch(&report);
    Ok(report)
}

fn add(batch: &mut Batch, record: Record, limits: &Limits, prices: &Prices) -> Result<(), AppError> {
    match record {
        Record::Trace {
            id,
            name,
            agent,
            product_id,
            started_at,
            ended_at,
            error,
            metadata,
        } => {
            let draft = TraceDraft {
                id: Some(id.into()),
                name,
                agent_id: agent.map(Into::into),
                product_id: product_id.map(Into::into),
                started_at: Some(started_at.into()),
                ended_at: None,
                error: None,
                metadata: metadata.map(Json),
            };
            let trace = ingest::validate_trace(draft, limits)?;
            let end = ended_at
                .map(|t| ingest::normalize_time("ended_at", t).map(|t| (t, error)))
                .transpose()?;
            batch.traces.push(PendingTrace { trace, end });
        }
        Record::Span {
            trace_id,
            id,
            parent,
            name,
            span_type,
            started_at,
            ended_at,
            input_text,
            output_text,
            error,
            metadata,
        } => {
            let span_type = SpanType::parse(&span_type)
                .ok_or_else(|| AppError::bad_input("span_type", format!("unknown span type {span_type:?}")))?;
            let draft = SpanDraft {
                id: Some(id.into()),
                trace_id: trace_id.into(),
                parent_id: parent.map(Into::into),
                name,
                span_type,
                started_at: Some(started_at.into()),
                ended_at: ended_at.map(Into::into),
                input_text,
                output_text,
                error,
                metadata: metadata.map(Json),
            };
            batch.spans.push(ingest::validate_span(draft, limits, prices)?);
        }
    }
    Ok(())
}

async fn flush(db: &Db, live: &LiveSpans, batch: Batch, line: usize, report: &mut Report) -> Result<(), ImportError> {
    let (traces, spans) = (batch.traces.len(), batch.spans.len());
    let (written, ended) = write::transact(db, async |txn| {
        let mut ends = Vec::new();
        let mut news = Vec::with_capacity(batch.traces.len());
        for pending in batch.traces {
            let id = pending.trace.row.id;
            ends.extend(pending.end.map(|(ended_at, error)| TraceEnd {
                id,
                ended_at: Some(ended_at),
                error,
            }));
            news.push(pending.trace);
        }
        store::traces::create_all(txn, news).await?;
        let written = write::insert_spans(txn, live, batch.spans).await?;
        let ended = write::end_in(txn, live, ends).await?;
        Ok((written, ended))
    })
    .await
    .map_err(|source| ImportError::Write { line, source })?;
    live.publish_added(written.fresh.iter().cloned());
    write::publish_ends(live, &ended);
    report.traces += traces;
    report.spans += spans;
    Ok(())
}
