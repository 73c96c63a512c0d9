//! The post and comment services: small REST services kept in memory, queried by author for
//! the gateway's dashboard.

use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::http::error_json;
use crate::user::store::now_millis;

/// A post or a comment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// UUIDv7.
    pub id: String,
    /// The author.
    pub user_id: String,
    /// The post a comment belongs to (comments only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
    /// The title (posts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The text.
    pub body: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewItem {
    user_id: Option<String>,
    post_id: Option<String>,
    title: Option<String>,
    body: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ByUser {
    user_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Content {
    kind: &'static str,
    items: Arc<RwLock<Vec<Item>>>,
}

/// The post service: `/posts`, `/posts/{id}`, `/health`.
pub fn posts_router() -> Router {
    router("post", "/posts")
}

/// The comment service: `/comments`, `/comments/{id}`, `/health`.
pub fn comments_router() -> Router {
    router("comment", "/comments")
}

fn router(kind: &'static str, base: &str) -> Router {
    let state = Content {
        kind,
        items: Arc::default(),
    };
    Router::new()
        .route(base, get(list).post(create))
        .route(&format!("{base}/{{id}}"), get(get_one))
        .route(
            "/health",
            get(
                move || async move { Json(serde_json::json!({ "status": "ok", "service": kind })) },
            ),
        )
        .with_state(state)
}

async fn create(
    State(content): State<Content>,
    headers: HeaderMap,
    Json(body): Json<NewItem>,
) -> Response {
    // The author named in the body, else the authenticated user the gateway forwards.
    let user_id = body.user_id.or_else(|| {
        headers
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let Some(user_id) = user_id.filter(|u| !u.is_empty()) else {
        return error_json(StatusCode::BAD_REQUEST, "userId is required");
    };
    if body.body.trim().is_empty() || body.body.len() > 10_000 {
        return error_json(StatusCode::BAD_REQUEST, "body must be 1 to 10000 bytes");
    }
    let item = Item {
        id: uuid::Uuid::now_v7().to_string(),
        user_id,
        post_id: if content.kind == "comment" {
            body.post_id
        } else {
            None
        },
        title: if content.kind == "post" {
            body.title
        } else {
            None
        },
        body: body.body,
        created_at: now_millis(),
    };
    content
        .items
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(item.clone());
    (StatusCode::CREATED, Json(item)).into_response()
}

async fn list(State(content): State<Content>, Query(q): Query<ByUser>) -> Json<Vec<Item>> {
    let items = content
        .items
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(
        items
            .iter()
            .filter(|i| q.user_id.as_ref().is_none_or(|u| &i.user_id == u))
            .cloned()
            .collect(),
    )
}

async fn get_one(State(content): State<Content>, Path(id): Path<String>) -> Response {
    let items = content
        .items
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match items.iter().find(|i| i.id == id) {
        Some(item) => Json(item.clone()).into_response(),
        None => error_json(
            StatusCode::NOT_FOUND,
            &format!("{} not found", content.kind),
        ),
    }
}
