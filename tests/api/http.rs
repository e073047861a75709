use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn graphiql_is_served_on_get() {
    let app = spawn_app().await;
    let page = app.http.get(format!("{}/graphql", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("graphiql"), "GraphiQL page expected");
    assert!(html.contains("/graphql/ws"), "subscriptions endpoint wired");
}

#[tokio::test]
async fn unknown_route_is_404() {
    let app = spawn_app().await;
    let response = app.http.get(format!("{}/nope", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
}
