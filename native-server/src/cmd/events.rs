//! `pier events`: the outbox of the configured storage from the command
//! line: deliveries pending and given up (`list`), given-up ones put back
//! (`retry`), a replication rule's existing tags queued (`backfill`). It
//! works on the store directly, so it serves a bucket that many instances
//! share and a directory whose server is stopped; a running server's outbox
//! is also at `/_pier/events` (docs/replication.md). Deliveries it queues
//! are made by the next server that drains the outbox.

use std::sync::Arc;

use clap::{Args, Subcommand};
use pier_core::deployment::{Deployment, Ports, Stores};
use pier_core::events::EventSink;

use crate::background::TokioBackground;
use crate::config::{CheckStorageArgs, Config, ServeArgs};
use crate::env::SystemEnv;
use crate::remote::ReqwestClient;

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub target: CheckStorageArgs,
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// The deliveries waiting, and with `--dead` those given up too (both
    /// are counted at the end either way).
    List {
        #[arg(long)]
        dead: bool,
        /// One JSON object per line rather than a table.
        #[arg(long)]
        json: bool,
    },
    /// Puts deliveries given up back in their lanes with fresh attempts:
    /// those of the event ids given, or all of them.
    Retry {
        /// Event ids; none for every dead delivery.
        ids: Vec<String>,
    },
    /// Queues a push event for every existing tag a replication rule
    /// matches (its id, as `list` and the server's start show it).
    Backfill { rule: String },
}

pub fn run(args: EventsArgs) -> Result<(), String> {
    let config = Config::load(ServeArgs {
        config: args.target.config.clone(),
        storage: args.target.storage,
        ..ServeArgs::default()
    })?;
    super::runtime()?.block_on(async move {
        let store = crate::store::open(&config.storage)?;
        let ports = Ports {
            env: Arc::new(SystemEnv),
            http: Arc::new(ReqwestClient::open()),
        };
        // The outbox needs no auth: the configuration's [auth] is left out.
        let deployment = Deployment::new(config.deployment.clone(), ports).map_err(|e| e.to_string())?;
        let site = deployment.site(Stores::Backend(store), Arc::new(TokioBackground));
        let events = site
            .events()
            .ok_or("the configuration has no [[webhook]] or [[replicate]] table: there is no outbox to show")?;
        match args.command {
            EventsCommand::List { dead, json } => list(events, dead, json).await,
            EventsCommand::Retry { ids } => {
                let lanes = events.outbox().retry_dead(&ids).await.map_err(|e| e.to_string())?;
                println!(
                    "{} lanes have deliveries due again; the next drain makes them",
                    lanes.len()
                );
                Ok(())
            }
            EventsCommand::Backfill { rule } => {
                let count = events.backfill(&rule).await.map_err(|e| e.message)?;
                println!("{count} existing tags queued for rule {rule}");
                Ok(())
            }
        }
    })
}

async fn list(events: &EventSink, dead: bool, json: bool) -> Result<(), String> {
    let listed = events
        .outbox()
        .list(true, usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    for item in listed.iter().filter(|item| dead || !item.dead) {
        if json {
            println!("{}", serde_json::to_string(item).map_err(|e| e.to_string())?);
            continue;
        }
        let event = &item.delivery.event;
        let tag = event.tag.as_deref().map(|t| format!(":{t}")).unwrap_or_default();
        println!(
            "{:7} {} {} {:6} {}{tag} attempts={} {}",
            if item.dead { "dead" } else { "pending" },
            item.target,
            event.id,
            event.action.as_str(),
            event.repository,
            item.delivery.attempts,
            item.delivery.last_error.as_deref().unwrap_or(""),
        );
    }
    let dead_count = listed.iter().filter(|item| item.dead).count();
    eprintln!("{} pending, {dead_count} dead", listed.len() - dead_count);
    Ok(())
}
