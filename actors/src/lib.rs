//! Runnel's actor runtime, and only that: the broker (`runnel-broker`) and the simulator's
//! workloads (`runnel-sim`) are built on it.
//!
//! Start from [`Node`]: it spawns actors ([`Actor`], [`Handler`]) behind bounded mailboxes,
//! hands back an [`Addr`] to `tell` or `ask` them, restarts them when they fail
//! ([`RestartPolicy`]) and shuts everything down with one reason. [`transport::Transport`]
//! carries typed messages between nodes over TCP. Everything runs on tokio tasks and no OS
//! threads, so the same code runs under madsim's simulator (`--cfg madsim`).

mod actor;
pub mod bench;
mod node;
pub mod transport;

pub use actor::{
    Actor, ActorError, Addr, AskError, Context, Handler, MailboxError, Message, TimerId,
};
pub use node::{Node, RestartPolicy, ShutdownReason};
