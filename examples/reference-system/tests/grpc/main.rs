#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A tonic client exercises every RPC of `user.UserService`, including the server-streamed
//! ListUsers, and the NOT_FOUND / INVALID_ARGUMENT / INTERNAL mapping.

use std::net::SocketAddr;

use sinew_reference_system::bus::Bus;
use sinew_reference_system::system::spawn_grpc;
use sinew_reference_system::user::UserService;
use sinew_reference_system::user::grpc::UserServiceClient;
use sinew_reference_system::user::grpc::proto::{
    CreateUserRequest, DeleteUserRequest, GetUserRequest, ListUsersRequest, UpdateUserRequest,
};
use sinew_reference_system::user::store::UserStore;
use sqlx::any::AnyPoolOptions;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;

async fn start() -> (UserServiceClient<Channel>, sqlx::AnyPool) {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let store = UserStore::open(pool.clone()).await.unwrap();
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    spawn_grpc(
        listener,
        UserService::new(store, Bus::memory(), "user-test"),
    );
    let client = UserServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, pool)
}

fn create(email: &str, name: &str) -> CreateUserRequest {
    CreateUserRequest {
        email: email.to_owned(),
        name: name.to_owned(),
        password: "long enough password".to_owned(),
    }
}

#[tokio::test]
async fn every_rpc() {
    let (mut client, _pool) = start().await;

    let ada = client
        .create_user(create("Ada@Example.com", "Ada"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ada.email, "ada@example.com");
    assert_eq!(ada.role, "user");
    assert!(ada.created_at > 0);

    let got = client
        .get_user(GetUserRequest { id: ada.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, ada);

    let renamed = client
        .update_user(UpdateUserRequest {
            id: ada.id.clone(),
            name: Some("Ada Lovelace".to_owned()),
            email: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Ada Lovelace");
    assert_eq!(
        renamed.email, "ada@example.com",
        "an absent optional field is left alone"
    );

    for i in 0..4 {
        client
            .create_user(create(&format!("u{i}@example.com"), &format!("User {i}")))
            .await
            .unwrap();
    }
    let page = |page, limit| ListUsersRequest { page, limit };
    let mut first: Vec<String> = Vec::new();
    let mut stream = client.list_users(page(1, 3)).await.unwrap().into_inner();
    while let Some(user) = stream.next().await {
        first.push(user.unwrap().email);
    }
    assert_eq!(
        first,
        ["ada@example.com", "u0@example.com", "u1@example.com"]
    );
    let second: Vec<_> = client
        .list_users(page(2, 3))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(second.len(), 2);

    client
        .delete_user(DeleteUserRequest { id: ada.id.clone() })
        .await
        .unwrap();
    let gone = client
        .get_user(GetUserRequest { id: ada.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let gone = client
        .delete_user(DeleteUserRequest { id: ada.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_arguments() {
    let (mut client, _pool) = start().await;
    for request in [
        create("not-an-email", "Ada"),
        create("ada@example.com", ""),
        create("ada@example.com", &"x".repeat(101)),
        CreateUserRequest {
            password: "short".to_owned(),
            ..create("ada@example.com", "Ada")
        },
    ] {
        let status = client.create_user(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
    }
    let status = client
        .get_user(GetUserRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .list_users(ListUsersRequest {
            page: -1,
            limit: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .list_users(ListUsersRequest {
            page: 1,
            limit: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let user = client
        .create_user(create("ada@example.com", "Ada"))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .update_user(UpdateUserRequest {
            id: user.id,
            name: None,
            email: Some("bad".to_owned()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_database_failure_is_internal_without_details() {
    let (mut client, pool) = start().await;
    pool.close().await;
    let status = client
        .get_user(GetUserRequest { id: "x".to_owned() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "Internal server error");
}
