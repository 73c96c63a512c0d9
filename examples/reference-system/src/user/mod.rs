//! The user service: REST `/users`, gRPC `user.UserService`, users in SQLite or PostgreSQL,
//! and a `user.created` event for every new user.

pub mod grpc;
pub mod store;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sinew_messaging::Event;

use self::store::{StoreError, User, UserStore};
use crate::bus::Bus;
use crate::http::error_json;

/// The payload of `user.created`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCreated {
    /// The new user's ID.
    pub id: String,
    /// Their email.
    pub email: String,
    /// Their name.
    pub name: String,
}

/// What the REST and gRPC fronts share.
#[derive(Debug, Clone)]
pub struct UserService {
    store: UserStore,
    bus: Bus,
    instance: String,
}

impl UserService {
    /// The service over `store`, publishing on `bus`, answering as `instance`.
    pub fn new(store: UserStore, bus: Bus, instance: impl Into<String>) -> Self {
        Self {
            store,
            bus,
            instance: instance.into(),
        }
    }

    /// The store.
    pub const fn store(&self) -> &UserStore {
        &self.store
    }

    /// Creates a user and publishes `user.created`: through the store's transactional outbox
    /// (in the insert's transaction) when it has one, else right after the insert (a crash
    /// in between would lose the event).
    ///
    /// # Errors
    ///
    /// [`StoreError`] from the store; a direct publish failure is logged, not returned.
    pub async fn create(
        &self,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<User, StoreError> {
        let new = self.store.prepare(email, name, password).await?;
        let user = &new.user;
        let event = Event::new(
            "user.created",
            user.id.clone(),
            UserCreated {
                id: user.id.clone(),
                email: user.email.clone(),
                name: user.name.clone(),
            },
        );
        let message = match self.bus.message("user-service", event) {
            Ok(m) => Some(m),
            Err(error) => {
                tracing::error!(%error, user = %user.id, "cannot encode user.created");
                None
            }
        };
        let enqueued = self.store.insert(&new, message.as_ref()).await?;
        if !enqueued
            && let Some(message) = message
            && let Err(error) = self.bus.publish_message(message).await
        {
            tracing::error!(%error, user = %user.id, "cannot publish user.created");
        }
        tracing::info!(user = %user.id, outbox = enqueued, "user created");
        Ok(new.user)
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Database(error) => {
                tracing::error!(%error, "database error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Hash => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_json(status, &self.to_string())
    }
}

#[derive(Debug, Deserialize)]
struct CreateUser {
    email: String,
    name: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct UpdateUser {
    name: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    page: Option<i64>,
    limit: Option<i64>,
}

/// The REST router: `/users`, `/users/{id}`, `/health`.
pub fn router(service: UserService) -> Router {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", get(get_one).put(update).delete(delete))
        .route("/health", get(health))
        .with_state(service)
}

async fn create(
    State(svc): State<UserService>,
    Json(body): Json<CreateUser>,
) -> Result<Response, StoreError> {
    let user = svc.create(&body.email, &body.name, &body.password).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn list(
    State(svc): State<UserService>,
    Query(paging): Query<Paging>,
) -> Result<Response, StoreError> {
    let page = paging.page.unwrap_or(1);
    let limit = paging.limit.unwrap_or(20);
    let users = svc.store.list(page, limit).await?;
    Ok(Json(serde_json::json!({ "users": users, "page": page, "limit": limit })).into_response())
}

async fn get_one(
    State(svc): State<UserService>,
    Path(id): Path<String>,
) -> Result<Json<User>, StoreError> {
    svc.store.get(&id).await.map(Json)
}

async fn update(
    State(svc): State<UserService>,
    Path(id): Path<String>,
    Json(body): Json<UpdateUser>,
) -> Result<Json<User>, StoreError> {
    svc.store
        .update(&id, body.name.as_deref(), body.email.as_deref())
        .await
        .map(Json)
}

async fn delete(
    State(svc): State<UserService>,
    Path(id): Path<String>,
) -> Result<StatusCode, StoreError> {
    svc.store.delete(&id).await.map(|()| StatusCode::NO_CONTENT)
}

async fn health(State(svc): State<UserService>) -> Response {
    if svc.store.ping().await {
        Json(serde_json::json!({ "status": "ok", "service": "user", "instance": svc.instance }))
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "down", "service": "user", "instance": svc.instance })),
        )
            .into_response()
    }
}
