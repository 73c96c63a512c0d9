//! Messaging.
