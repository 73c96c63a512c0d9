//! The user store: SQLite (embedded default) or PostgreSQL through `sqlx::AnyPool`, with
//! argon2 password hashes that never leave this module.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use serde::{Deserialize, Serialize};
use sinew_messaging::Message;
use sinew_messaging::outbox::{OutboxError, PgOutbox, SqliteOutbox};
use sqlx::{AnyPool, Row};

/// A user as every API returns it: never the password or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// UUIDv7.
    pub id: String,
    /// Unique, validated.
    pub email: String,
    /// 1 to 100 characters.
    pub name: String,
    /// `user` or `admin`.
    pub role: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input is invalid; the message says which field.
    #[error("{0}")]
    Invalid(String),
    /// No such user.
    #[error("user not found")]
    NotFound,
    /// The email is taken.
    #[error("email already registered")]
    Conflict,
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Hashing the password failed.
    #[error("cannot hash the password")]
    Hash,
}

/// Checks an email address: one `@`, a non-empty local part, a dotted domain, no spaces,
/// at most 254 characters.
pub fn validate_email(email: &str) -> Result<(), StoreError> {
    let invalid = || StoreError::Invalid("invalid email".to_owned());
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(invalid());
    }
    Ok(())
}

/// Checks a name: 1 to 100 characters after trimming, no control characters.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control)
    {
        return Err(StoreError::Invalid(
            "name must be 1 to 100 characters".to_owned(),
        ));
    }
    Ok(())
}

/// The user table.
#[derive(Debug, Clone)]
pub struct UserStore {
    pool: AnyPool,
    outbox: Option<UserOutbox>,
}

/// The transactional outbox `user.created` goes through, on the store's own database: the
/// user row and the event commit together, or neither does.
#[derive(Debug, Clone)]
pub enum UserOutbox {
    /// On PostgreSQL (`DATABASE_URL`).
    Pg(PgOutbox),
    /// On the embedded SQLite file.
    Sqlite(SqliteOutbox),
}

/// A validated user with its password hash, not stored yet; see [`UserStore::prepare`].
#[derive(Debug)]
pub struct NewUser {
    /// The user as it will be stored.
    pub user: User,
    hash: String,
}

const INSERT: &str = "INSERT INTO users (id, email, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

fn outbox_error(error: OutboxError) -> StoreError {
    match error {
        OutboxError::Database(e) => StoreError::Database(e),
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

fn row_to_user(row: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
    })
}

fn map_unique(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(err),
    }
}

impl UserStore {
    /// Opens the store on `pool` and creates the table if needed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when the table cannot be created.
    pub async fn open(pool: AnyPool) -> Result<Self, StoreError> {
        // Replicas starting together race on `CREATE TABLE IF NOT EXISTS` (PostgreSQL can
        // answer a unique violation on its catalog to the loser): try again.
        let mut attempt = 0;
        loop {
            let created = sqlx::query(
                "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, \
                 name TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at BIGINT NOT NULL)",
            )
            .execute(&pool)
            .await;
            match created {
                Ok(_) => {
                    return Ok(Self { pool, outbox: None });
                }
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(%error, attempt, "creating the users table failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// This store with `outbox` (on the same database, migrated): [`insert`](Self::insert)
    /// then writes the event in the user's transaction.
    #[must_use]
    pub fn with_outbox(mut self, outbox: UserOutbox) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The outbox, if any.
    pub const fn outbox(&self) -> Option<&UserOutbox> {
        self.outbox.as_ref()
    }

    /// Creates a user with role `user`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for a bad email, name or password, [`StoreError::Conflict`]
    /// when the email is taken.
    pub async fn create(
        &self,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<User, StoreError> {
        let new = self.prepare(email, name, password).await?;
        self.insert(&new, None).await?;
        Ok(new.user)
    }

    /// Validates a new user and hashes the password, without storing anything.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for a bad email, name or password.
    pub async fn prepare(
        &self,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<NewUser, StoreError> {
        let email = email.trim().to_lowercase();
        validate_email(&email)?;
        validate_name(name)?;
        if password.chars().count() < 8 {
            return Err(StoreError::Invalid(
                "password must be at least 8 characters".to_owned(),
            ));
        }
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await
        .map_err(|_| StoreError::Hash)?
        .map_err(|_| StoreError::Hash)?;
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            name: name.trim().to_owned(),
            role: "user".to_owned(),
            created_at: now_millis(),
        };
        Ok(NewUser { user, hash })
    }

    /// Stores `new`, and with an outbox and an `event`, enqueues the event in the same
    /// transaction (then wakes a SQLite relay). Returns whether the event went to the outbox;
    /// when it did not, the caller publishes it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the email is taken, [`StoreError::Database`] otherwise;
    /// nothing is stored then.
    pub async fn insert(&self, new: &NewUser, event: Option<&Message>) -> Result<bool, StoreError> {
        let (user, hash) = (&new.user, &new.hash);
        macro_rules! insert_on {
            ($conn:expr) => {
                sqlx::query(INSERT)
                    .bind(&user.id)
                    .bind(&user.email)
                    .bind(&user.name)
                    .bind(&user.role)
                    .bind(hash)
                    .bind(user.created_at)
                    .execute($conn)
                    .await
                    .map_err(map_unique)
            };
        }
        match (&self.outbox, event) {
            (Some(UserOutbox::Pg(outbox)), Some(message)) => {
                let mut tx = outbox.pool().begin().await?;
                insert_on!(&mut *tx)?;
                outbox
                    .enqueue_message(&mut tx, message)
                    .await
                    .map_err(outbox_error)?;
                tx.commit().await?;
                Ok(true)
            }
            (Some(UserOutbox::Sqlite(outbox)), Some(message)) => {
                let mut tx = outbox.pool().begin().await?;
                insert_on!(&mut *tx)?;
                outbox
                    .enqueue_message(&mut tx, message)
                    .await
                    .map_err(outbox_error)?;
                tx.commit().await?;
                outbox.wake();
                Ok(true)
            }
            _ => {
                insert_on!(&self.pool)?;
                Ok(false)
            }
        }
    }

    /// The user `id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is none.
    pub async fn get(&self, id: &str) -> Result<User, StoreError> {
        let row = sqlx::query("SELECT id, email, name, role, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row_to_user(&row)?)
    }

    /// Changes the name and/or email of user `id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::Invalid`] or [`StoreError::Conflict`].
    pub async fn update(
        &self,
        id: &str,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<User, StoreError> {
        let mut user = self.get(id).await?;
        if let Some(name) = name {
            validate_name(name)?;
            name.trim().clone_into(&mut user.name);
        }
        if let Some(email) = email {
            let email = email.trim().to_lowercase();
            validate_email(&email)?;
            user.email = email;
        }
        sqlx::query("UPDATE users SET name = $1, email = $2 WHERE id = $3")
            .bind(&user.name)
            .bind(&user.email)
            .bind(&user.id)
            .execute(&self.pool)
            .await
            .map_err(map_unique)?;
        Ok(user)
    }

    /// Deletes user `id`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when there is none.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Page `page` (from 1) of `limit` users (1 to 100), oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for a page below 1 or a limit outside 1..=100.
    pub async fn list(&self, page: i64, limit: i64) -> Result<Vec<User>, StoreError> {
        if page < 1 || !(1..=100).contains(&limit) {
            return Err(StoreError::Invalid(
                "page must be >= 1 and limit 1 to 100".to_owned(),
            ));
        }
        let rows = sqlx::query(
            "SELECT id, email, name, role, created_at FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind((page - 1) * limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(row_to_user)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(validate_email("ada@example.com").is_ok());
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a da@example.com",
            "a@b@c.com",
            "ada@.com",
            "ada@example..com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("Ada").is_ok());
        assert!(validate_name("  ").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
    }
}
