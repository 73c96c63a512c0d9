//! `user.UserService` over gRPC (tonic), exactly as the design's `user.proto`.

use std::pin::Pin;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::UserService;
use super::store::{StoreError, User};

/// The code generated from `proto/user.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("user");
}

pub use proto::user_service_client::UserServiceClient;
pub use proto::user_service_server::UserServiceServer;

impl From<User> for proto::User {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            role: user.role,
            created_at: user.created_at,
        }
    }
}

/// NOT_FOUND, INVALID_ARGUMENT (and ALREADY_EXISTS for a taken email); everything else is
/// INTERNAL with a generic message, the cause only in the logs.
fn status(err: StoreError) -> Status {
    match err {
        StoreError::NotFound => Status::not_found("User not found"),
        StoreError::Invalid(message) => Status::invalid_argument(message),
        StoreError::Conflict => Status::already_exists("email already registered"),
        StoreError::Database(error) => {
            tracing::error!(%error, "database error");
            Status::internal("Internal server error")
        }
        StoreError::Hash => Status::internal("Internal server error"),
    }
}

/// The gRPC front of [`UserService`].
#[derive(Debug, Clone)]
pub struct GrpcUsers(pub UserService);

/// A server-streamed page of users.
pub type UserStream = Pin<Box<dyn Stream<Item = Result<proto::User, Status>> + Send>>;

#[tonic::async_trait]
impl proto::user_service_server::UserService for GrpcUsers {
    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(Status::invalid_argument("id is required"));
        }
        self.0
            .store()
            .get(&id)
            .await
            .map(|u| Response::new(u.into()))
            .map_err(status)
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let r = request.into_inner();
        self.0
            .create(&r.email, &r.name, &r.password)
            .await
            .map(|u| Response::new(u.into()))
            .map_err(status)
    }

    async fn update_user(
        &self,
        request: Request<proto::UpdateUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let r = request.into_inner();
        self.0
            .store()
            .update(&r.id, r.name.as_deref(), r.email.as_deref())
            .await
            .map(|u| Response::new(u.into()))
            .map_err(status)
    }

    async fn delete_user(
        &self,
        request: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.0
            .store()
            .delete(&request.into_inner().id)
            .await
            .map(|()| Response::new(proto::Empty {}))
            .map_err(status)
    }

    type ListUsersStream = UserStream;

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<Self::ListUsersStream>, Status> {
        let r = request.into_inner();
        let page = if r.page == 0 { 1 } else { i64::from(r.page) };
        let limit = if r.limit == 0 { 20 } else { i64::from(r.limit) };
        let users = self.0.store().list(page, limit).await.map_err(status)?;
        let stream = futures_util::stream::iter(users.into_iter().map(|u| Ok(u.into())));
        Ok(Response::new(Box::pin(stream)))
    }
}
