//! The GraphQL schema: roots, types, loaders, and how it is built with or without data.

mod api;
mod budget;
pub mod fanout;
pub use api::Api;
use api::PerRequest;
pub mod errors;
pub mod json;
pub mod limits;
pub mod loaders;
pub mod merged;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;
mod validated;

use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    Context, ErrorExtensions, SDLExportOptions, Schema, SchemaBuilder, SelectionField, ValidationMode,
};

use crate::auth::{Access, Scope};
use crate::config::{Config, Limits};
use crate::db::Db;
use crate::db::store::spans::Texts;
use crate::error::AppResult;
use crate::live::LiveSpans;
use crate::prices::Prices;
use loaders::{Loaders, SpanTree, TreeCache, TreeOf};
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

pub type AppLoader = DataLoader<Loaders, TreeCache>;
pub type AppSchema = Schema<Query, Mutation, Subscription>;
/// The `JSON` scalar: any JSON value.
pub type Json = async_graphql::Json<serde_json::Value>;

/// What resolvers need, put in the schema's data once.
#[derive(Clone)]
pub struct State {
    pub db: Db,
    pub live: LiveSpans,
    pub limits: Limits,
    pub prices: Arc<Prices>,
}

/// The schema without data: enough to print the SDL.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
}

pub fn build_api(state: State, config: &Config) -> Api {
    let schema = |validation| {
        // Subscriptions use the strict one's, long-lived and so never caching; queries
        // and mutations bring their own (`Api::execute`).
        let loaders = loaders(Loaders::shared(state.db.clone(), &state.limits));
        loaders.enable_all_cache(false);
        let builder = schema_builder()
            .data(loaders)
            .data(state.clone())
            .validation_mode(validation)
            .limit_depth(config.max_query_depth)
            .limit_complexity(config.max_query_complexity)
            // Caps the parser's own recursion, so nesting cannot exhaust the stack.
            .limit_recursive_depth(config.max_query_depth.saturating_mul(2).max(32));
        if config.disable_introspection {
            builder.disable_introspection().finish()
        } else {
            builder.finish()
        }
    };
    let limits = limits::QueryLimits {
        max_tokens: config.max_query_tokens,
        max_aliases: config.max_query_aliases,
        max_root_fields: config.max_query_root_fields,
        max_directives: config.max_query_directives,
    };
    let per_request = PerRequest {
        db: state.db.clone(),
        limits: state.limits,
        turns: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests.max(1))),
        timeout: std::time::Duration::from_millis(config.request_timeout_ms.max(1)),
    };
    Api::new(
        schema(ValidationMode::Strict),
        schema(ValidationMode::Fast),
        limits,
        config.live_buffer,
        per_request,
    )
}

/// Loaders for one request: span trees are cached for its lifetime only.
fn request_loaders(db: &Db, limits: &Limits) -> AppLoader {
    loaders(Loaders::for_request(db.clone(), limits))
}

fn loaders(loaders: Loaders) -> AppLoader {
    AppLoader::with_cache(loaders, spawn_after_siblings, TreeCache)
        // The default waits a timer tick (1 ms or more) to gather keys: most of a small
        // query's time. Sibling fields register their keys within one poll, before the
        // batch task runs (it yields first), so no wait is needed.
        .delay(std::time::Duration::ZERO)
}

/// Runs a loader's batch once the tasks ready now, the ones adding keys, have run.
fn spawn_after_siblings(batch: futures::future::BoxFuture<'static, ()>) {
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        batch.await;
    });
}

/// The SDL that `schema.graphql` holds.
pub fn sdl() -> String {
    schema_builder().finish().sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

pub(crate) fn state<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a State> {
    ctx.data::<State>()
}

static OPEN: Access = Access::Open;

/// The caller's access, after checking it has `scope`. Without a transport that sets
/// one (the schema used directly), access is open.
pub(crate) fn allow<'a>(ctx: &Context<'a>, scope: Scope) -> async_graphql::Result<&'a Access> {
    let access = ctx.data_opt::<Access>().unwrap_or(&OPEN);
    gql(access.require(scope))?;
    Ok(access)
}

/// Refuses when a product-scoped caller touches spans of another product's traces.
pub(crate) async fn check_trace_products(
    access: &Access,
    db: &Db,
    trace_ids: impl IntoIterator<Item = uuid::Uuid>,
) -> async_graphql::Result<()> {
    if access.products().is_none() {
        return Ok(());
    }
    for trace in gql(crate::db::store::traces::by_ids(&db.read, trace_ids).await)? {
        gql(access.check_product(trace.product_id))?;
    }
    Ok(())
}

/// As [`check_trace_products`], for one span.
pub(crate) async fn check_span_product(access: &Access, db: &Db, span_id: uuid::Uuid) -> async_graphql::Result<()> {
    if access.products().is_none() {
        return Ok(());
    }
    let span = gql(crate::db::store::spans::get(&db.read, span_id).await)?;
    gql(access.check_product(span.product_id))
}

/// The state for a mutation needing `scope`. It forgets the request's cached span
/// trees first, so the mutation's own selection reads what it wrote.
pub(crate) fn write_state<'a>(ctx: &Context<'a>, scope: Scope) -> async_graphql::Result<(&'a State, &'a Access)> {
    let access = allow(ctx, scope)?;
    ctx.data::<AppLoader>()?.clear::<loaders::TreeOf>();
    Ok((state(ctx)?, access))
}

/// Span fields too large to read for a tree that does not show them.
const LARGE_FIELDS: [&str; 3] = ["inputText", "outputText", "metadata"];

/// Whether spans read for these selections need their large fields: they do when any
/// selection asks for one at any depth. A resolver asks this of its own field, so a
/// span that shows a large field always comes from a read with them.
pub(crate) fn texts_for<'a>(fields: impl IntoIterator<Item = SelectionField<'a>>) -> Texts {
    if fields.into_iter().any(wants_large_fields) {
        Texts::Read
    } else {
        Texts::Skip
    }
}

fn wants_large_fields(field: SelectionField<'_>) -> bool {
    field
        .selection_set()
        .any(|f| LARGE_FIELDS.contains(&f.name()) || wants_large_fields(f))
}

/// The span tree of a trace, loaded once per request, for `field`. A trace known to have
/// spans whose tree came back empty is one too large to read whole (its spans were left
/// out, `store::spans::of_trees`): refused.
pub(crate) async fn tree(
    ctx: &Context<'_>,
    trace_id: uuid::Uuid,
    texts: Texts,
    field: &'static str,
    has_spans: bool,
) -> async_graphql::Result<Arc<SpanTree>> {
    let loader = ctx.data::<AppLoader>()?;
    let tree = gql(loader.load_one(TreeOf { trace_id, texts }).await)?.unwrap_or_default();
    if has_spans && tree.all().is_empty() {
        return Err(too_large(ctx, field, trace_id));
    }
    Ok(tree)
}

/// `LIMIT_EXCEEDED` for `field` of a trace with more spans than are read whole.
pub(crate) fn too_large(ctx: &Context<'_>, field: &'static str, trace_id: uuid::Uuid) -> async_graphql::Error {
    match state(ctx) {
        Ok(state) => crate::error::AppError::TraceTooLarge {
            field,
            trace_id,
            max: state.limits.max_tree_spans as u64,
        }
        .extend(),
        Err(e) => e,
    }
}

/// The field under a trace's selection that will read the trace's whole span tree, if
/// any: `rootSpans` when it goes below the roots, else `spans` when no selection of it
/// has a filter (a filtered one reads only its own spans).
pub(crate) fn tree_field<'a>(trace: async_graphql::Lookahead<'a>) -> Option<async_graphql::Lookahead<'a>> {
    let roots = trace.field("rootSpans");
    if roots.field("children").exists() {
        return Some(roots);
    }
    let spans = trace.field("spans");
    let unfiltered = spans.selection_fields().iter().all(|field| {
        field
            .arguments()
            .is_ok_and(|arguments| arguments.iter().all(|(_, value)| *value == async_graphql::Value::Null))
    });
    Some(spans).filter(|spans| spans.exists() && unfiltered)
}

/// Whether the trees `below` (from `tree_field`) asks for are read with their texts;
/// `None` when it selects nothing, so that no tree is read.
pub(crate) fn tree_texts(below: async_graphql::Lookahead<'_>) -> Option<Texts> {
    let fields = below.selection_fields();
    (!fields.is_empty()).then(|| texts_for(fields))
}

/// Loads the trees of many traces in one statement, ahead of their nested fields; `below`
/// is the field that will ask for them, and decides whether they are read whole.
pub(crate) async fn prefetch_trees(
    ctx: &Context<'_>,
    trace_ids: impl IntoIterator<Item = uuid::Uuid>,
    below: async_graphql::Lookahead<'_>,
) -> async_graphql::Result<()> {
    let Some(texts) = tree_texts(below) else {
        return Ok(());
    };
    let loader = ctx.data::<AppLoader>()?;
    gql(loader
        .load_many(trace_ids.into_iter().map(|trace_id| TreeOf { trace_id, texts }))
        .await)?;
    Ok(())
}

pub(crate) fn db<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Db> {
    Ok(&state(ctx)?.db)
}

/// Carries an `AppError`'s code into the GraphQL error.
pub(crate) fn gql<T>(result: AppResult<T>) -> async_graphql::Result<T> {
    result.map_err(|e| e.extend())
}

/// Loads one row through the loaders and wraps it in its API type.
pub(crate) async fn load_one<K, V, T>(ctx: &Context<'_>, key: K) -> async_graphql::Result<Option<T>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    V: Send + Sync + Clone + 'static,
    Loaders: Loader<K, Value = V, Error = crate::error::AppError>,
    T: From<V>,
{
    let loader = ctx.data::<AppLoader>()?;
    Ok(gql(loader.load_one(key).await)?.map(T::from))
}

/// Loads a list of rows through the loaders and wraps each in its API type.
pub(crate) async fn load_many<K, V, T>(ctx: &Context<'_>, key: K) -> async_graphql::Result<Vec<T>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    V: Send + Sync + Clone + 'static,
    Loaders: Loader<K, Value = Vec<V>, Error = crate::error::AppError>,
    T: From<V>,
{
    let loader = ctx.data::<AppLoader>()?;
    let rows = gql(loader.load_one(key).await)?.unwrap_or_default();
    Ok(rows.into_iter().map(T::from).collect())
}
