//! The server's entity reads decode rows themselves (in place on SQLite, by position on
//! PostgreSQL); every model they give must equal SeaORM's own reading of the same rows.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, IdenStatic, QueryOrder, QuerySelect};
use serde_json::json;
use tracegraph::db::entities::{agent_usage, agent_usage_total, api_key, span, span_flag, trace};
use tracegraph::db::store::detail::Bounds;
use tracegraph::db::store::spans::Texts;
use tracegraph::db::{Fetch, fetch_all, fetch_count, store};
use tracegraph::filters::{Page, SpanFilter, SpanSort, TraceFilter, TraceSort};

use crate::helpers::{generate, import, spawn_app};

/// Rows a read of span trees asks for at most, as a request's first does.
const ROWS: usize = tracegraph::config::DEFAULT_MAX_REQUEST_SPANS as usize + 1;
const BOUNDS: Bounds = Bounds {
    max_tree_spans: tracegraph::config::DEFAULT_MAX_TREE_SPANS,
    span_rows: ROWS,
};

/// Reads every row of `E` both ways and checks they agree; returns how many there are.
async fn same_models<E>(db: &tracegraph::db::Db, order: E::Column) -> usize
where
    E: EntityTrait,
    E::Model: Sync + PartialEq + std::fmt::Debug + tracegraph::db::pg_decode::FromPlainRow,
    E::ActiveModel: sea_orm::TryIntoModel<E::Model>,
{
    let direct = fetch_all(&db.read, E::find().order_by_asc(order)).await.unwrap();
    let seaorm = E::find().order_by_asc(order).all(db.read.pool()).await.unwrap();
    assert_eq!(direct, seaorm);
    assert_eq!(
        fetch_count(&db.read, E::find()).await.unwrap(),
        direct.len() as u64,
        "counts agree with the rows read"
    );
    direct.len()
}

#[tokio::test]
async fn direct_entity_reads_equal_seaorms_for_every_column() {
    let app = spawn_app().await;
    let (_dir, path) = generate(5);
    import(&app.database_url, &path);
    // Flags, open and resolved (nullable columns both ways), and an API key with
    // products and one without.
    let spans = app.ok("{ spans(limit: 2) { items { id } } }", json!({})).await;
    let ids: Vec<&str> = spans["spans"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let mut flag_ids = Vec::new();
    for id in &ids {
        let flagged = app
            .ok(
                "mutation($id: UUID!) { flagSpan(id: $id, reason: \"check\") { flags { id } } }",
                json!({"id": id}),
            )
            .await;
        flag_ids.push(flagged["flagSpan"]["flags"][0]["id"].clone());
    }
    let flag_id = flag_ids[0].clone();
    app.ok(
        "mutation($f: UUID!) { resolveFlag(flagId: $f, note: \"fine\") { id } }",
        json!({"f": flag_id}),
    )
    .await;
    app.create_key("all", &["read"], &[]).await;
    app.create_key("one product", &["read"], &[&uuid::Uuid::new_v4().to_string()])
        .await;

    let db = tracegraph::db::connect(&app.database_url, 2).await.unwrap();
    assert!(db.read.direct().is_some(), "the server's reader decodes rows itself");
    assert_eq!(same_models::<trace::Entity>(&db, trace::Column::Id).await, 5);
    assert_eq!(same_models::<span::Entity>(&db, span::Column::Id).await, 100);
    assert_eq!(same_models::<span_flag::Entity>(&db, span_flag::Column::Id).await, 2);
    assert_eq!(
        same_models::<agent_usage::Entity>(&db, agent_usage::Column::Id).await,
        5
    );
    assert!(same_models::<agent_usage_total::Entity>(&db, agent_usage_total::Column::AgentId).await > 0);
    assert_eq!(same_models::<api_key::Entity>(&db, api_key::Column::Id).await, 2);

    // Span trees are read with literals in place of the large columns.
    let all = Condition::all();
    let direct = store::spans::in_start_order(&db.read, all.clone(), Texts::Skip, ROWS)
        .await
        .unwrap();
    let seaorm = store::spans::in_start_order(db.read.pool(), all, Texts::Skip, ROWS)
        .await
        .unwrap();
    assert_eq!(direct.len(), 100);
    assert_eq!(direct, seaorm);
    // A read of at most some rows stops there, as the reader or as SQL, and the
    // connection it stopped on serves the next read.
    for _ in 0..2 {
        let first = store::spans::in_start_order(&db.read, Condition::all(), Texts::Skip, 7)
            .await
            .unwrap();
        assert_eq!(first, direct[..7]);
    }
    let first = store::spans::in_start_order(db.read.pool(), Condition::all(), Texts::Skip, 7)
        .await
        .unwrap();
    assert_eq!(first, direct[..7]);
    assert!(direct.iter().all(|s| s.input_text.is_none() && s.metadata == json!({})));

    // And so are pages of spans that do not show them.
    let (filter, sort, page) = (
        SpanFilter::default(),
        SpanSort::default(),
        Page::from_args(Some(500), None).unwrap(),
    );
    let direct = store::spans::list(&db.read, &filter, sort, page, Texts::Skip)
        .await
        .unwrap();
    let seaorm = store::spans::list(db.read.pool(), &filter, sort, page, Texts::Skip)
        .await
        .unwrap();
    let whole = store::spans::list(&db.read, &filter, sort, page, Texts::Read)
        .await
        .unwrap();
    assert_eq!(direct.items, seaorm.items);
    assert_eq!(direct.items.len(), 100);

    assert!(whole.items.iter().any(|s| s.input_text.is_some()));
    for (light, whole) in direct.items.iter().zip(&whole.items) {
        let blanked = span::Model {
            input_text: None,
            output_text: None,
            metadata: json!({}),
            ..whole.clone()
        };
        assert_eq!(light, &blanked);
    }

    // A page of traces leaves out their metadata the same way.
    let (filter, sort) = (TraceFilter::default(), TraceSort::StartedAtDesc);
    let light_traces = store::traces::list(&db.read, &filter, sort, page, Texts::Skip)
        .await
        .unwrap();
    let seaorm_traces = store::traces::list(db.read.pool(), &filter, sort, page, Texts::Skip)
        .await
        .unwrap();
    let whole_traces = store::traces::list(&db.read, &filter, sort, page, Texts::Read)
        .await
        .unwrap();
    assert_eq!(light_traces.items, seaorm_traces.items);
    assert_eq!(light_traces.items.len(), 5);
    assert!(whole_traces.items.iter().any(|t| t.metadata != json!({})));
    for (light, whole) in light_traces.items.iter().zip(&whole_traces.items) {
        let blanked = trace::Model {
            metadata: json!({}),
            ..whole.clone()
        };
        assert_eq!(light, &blanked);
    }
}

/// Traces with their spans (one statement on PostgreSQL) give the models their two reads
/// give apart, through SeaORM: every column of both, with and without the large fields,
/// for traces with spans, one without, and one that does not exist, one at a time and
/// all at once.
#[tokio::test]
async fn a_trace_read_with_its_spans_equals_its_two_reads() {
    let app = spawn_app().await;
    let (_dir, path) = generate(5);
    import(&app.database_url, &path);
    let empty = app
        .ok("mutation { createTrace(input: {name: \"empty\"}) { id } }", json!({}))
        .await;
    let db = tracegraph::db::connect(&app.database_url, 2).await.unwrap();
    let mut ids: Vec<uuid::Uuid> = trace::Entity::find()
        .all(db.read.pool())
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids.len(), 6);
    let missing = uuid::Uuid::new_v4();
    ids.push(missing);
    let empty: uuid::Uuid = empty["createTrace"]["id"].as_str().unwrap().parse().unwrap();

    // One trace at a time (as a request with one `trace(id)` asks), then all at once.
    let mut spans_read = 0;
    let batches = ids.iter().map(std::slice::from_ref).chain([ids.as_slice()]);
    for batch in batches {
        for texts in [Texts::Read, Texts::Skip] {
            let (mut traces, spans) = store::detail::traces_with_spans(&db.read, batch, texts, BOUNDS)
                .await
                .unwrap();
            let mut apart = store::traces::by_ids(db.read.pool(), batch.iter().copied())
                .await
                .unwrap();
            let tree = Condition::all().add(span::Column::TraceId.is_in(batch.iter().copied()));
            let spans_apart = store::spans::in_start_order(db.read.pool(), tree, texts, ROWS)
                .await
                .unwrap();
            traces.sort_by_key(|t| t.id);
            apart.sort_by_key(|t| t.id);
            assert_eq!(traces, apart, "traces {batch:?}");
            assert_eq!(spans, spans_apart, "spans of {batch:?}, {texts:?}");
            if batch == [empty] || batch == [missing] {
                assert_eq!((traces.len(), spans.len()), (usize::from(batch == [empty]), 0));
            }
            if texts == Texts::Read && batch.len() == 1 {
                spans_read += spans.len();
            }
            if batch.len() > 1 {
                assert_eq!((traces.len(), spans.len()), (6, 100), "all of them at once");
            }
        }
    }
    assert_eq!(spans_read, 100, "every span, under its own trace");
}

#[tokio::test]
async fn a_stored_value_of_another_type_is_an_error_not_a_wrong_model() {
    let app = spawn_app().await;
    let (_dir, path) = generate(1);
    import(&app.database_url, &path);
    let db = tracegraph::db::connect(&app.database_url, 2).await.unwrap();
    // Every column as stored, except the name, read as `sql`.
    let name_read_as = |sql: &'static str| {
        let mut select = trace::Entity::find().select_only();
        for column in <trace::Column as sea_orm::Iterable>::iter() {
            select = match column {
                trace::Column::Name => select.column_as(Expr::cust(sql), column.as_str()),
                other => select.column(other),
            };
        }
        select
    };
    // An integer where the model holds text.
    match fetch_all(&db.read, name_read_as("1")).await {
        Err(DbErr::Type(message)) => assert!(message.contains("name"), "{message}"),
        other => panic!("expected a type error naming the column, got {other:?}"),
    }

    // A null where the model holds a value, in a column whose type matches (text): on
    // PostgreSQL the rows are then read by position, and the error still names it.
    match fetch_all(&db.read, name_read_as("CAST(NULL AS TEXT)")).await {
        Err(e @ (DbErr::Type(_) | DbErr::AttrNotSet(_))) => assert!(e.to_string().contains("name"), "{e}"),
        other => panic!("expected an error naming the null column, got {other:?}"),
    }
}

#[tokio::test]
async fn columns_in_any_order_read_the_same_models() {
    let app = spawn_app().await;
    let (_dir, path) = generate(3);
    import(&app.database_url, &path);
    let db = tracegraph::db::connect(&app.database_url, 2).await.unwrap();
    // Every span column, last first, with an extra one the model does not have: the
    // fields are found by name, whatever their positions.
    let mut select = span::Entity::find().select_only();
    let columns: Vec<span::Column> = <span::Column as sea_orm::Iterable>::iter().collect();
    for column in columns.iter().rev() {
        select = select.column(*column);
    }
    select = select.column_as(Expr::cust("42"), "unrelated");
    let direct = fetch_all(&db.read, select.order_by_asc(span::Column::Id))
        .await
        .unwrap();
    let seaorm = span::Entity::find()
        .order_by_asc(span::Column::Id)
        .all(db.read.pool())
        .await
        .unwrap();
    assert_eq!(direct.len(), 60);
    assert_eq!(direct, seaorm);

    // A column the model needs and the statement lacks is an error naming it (a type
    // error on PostgreSQL, an unset attribute on SQLite, as SeaORM reports each).
    let mut select = trace::Entity::find().select_only();
    for column in <trace::Column as sea_orm::Iterable>::iter().filter(|c| !matches!(c, trace::Column::SpanCount)) {
        select = select.column(column);
    }
    match fetch_all(&db.read, select).await {
        Err(e @ (DbErr::Type(_) | DbErr::AttrNotSet(_))) => assert!(e.to_string().contains("span_count"), "{e}"),
        other => panic!("expected an error naming the missing column, got {other:?}"),
    }
}

/// Reads through SQLite's memory-mapped file (`--sqlite-mmap-mb`) answer byte for byte
/// as reads page by page do (on PostgreSQL the option does nothing, and the same holds).
#[tokio::test]
async fn reads_through_a_mapped_file_answer_the_same() {
    let (_dir, path) = generate(20);
    let app = spawn_app().await;
    import(&app.database_url, &path);
    let mapped = app.second_instance_with(|c| c.sqlite_mmap_mb = 64).await;
    let detail = "{ traces(limit: 20) { totalCount items { id name metadata
        spans { id parentId name spanType startedAt endedAt inputText outputText error metadata } } } }";
    let plain = app.gql_text(detail, json!({})).await;
    assert!(plain.contains("inputText") && !plain.contains("\"errors\""), "{plain}");
    assert_eq!(mapped.gql_text(detail, json!({})).await, plain);
}
