//! `revsync demo` and `revsync sim`: the four systems' simulators, a generated company
//! world loaded into them, and the daemon keeping them in agreement, on loopback only.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

#[cfg(feature = "demo")]
mod run;
#[cfg(feature = "demo")]
pub mod seed;
pub mod world;

/// The generated world's size and seed.
#[derive(Args, Debug, Clone)]
pub struct WorldArgs {
    /// People in the world (each in one to three of HubSpot, Salesforce, Zendesk).
    #[arg(long, default_value_t = 2000)]
    pub people: usize,
    /// Companies (in HubSpot, Salesforce, Zendesk and, with a subscription, Stripe).
    #[arg(long, default_value_t = 400)]
    pub companies: usize,
    /// Deals (HubSpot deals or Salesforce opportunities).
    #[arg(long, default_value_t = 600)]
    pub deals: usize,
    /// Zendesk tickets.
    #[arg(long, default_value_t = 1500)]
    pub tickets: usize,
    /// Stripe subscriptions, each with one to three invoices.
    #[arg(long, default_value_t = 300)]
    pub subscriptions: usize,
    /// Percent of Salesforce Contacts typed in again as a Lead (nickname, no email): the
    /// fuzzy duplicates scored identity joins or sends to review.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub retyped_pct: u8,
    /// Random seed: the same seed generates the same world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl WorldArgs {
    pub fn sizes(&self) -> world::Sizes {
        world::Sizes {
            people: self.people,
            companies: self.companies,
            deals: self.deals,
            tickets: self.tickets,
            subscriptions: self.subscriptions,
            retyped_pct: self.retyped_pct,
        }
    }
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Exit after converging (for scripts): 0 when converged, 1 when not.
    #[arg(long)]
    pub once: bool,
    /// Address of the daemon's HTTP API (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Give up waiting for convergence after this many seconds.
    #[arg(long, default_value_t = 240)]
    pub timeout_secs: u64,
    /// Keep the canonical store in this PostgreSQL database (`postgres://...`) instead of
    /// sled. It must hold no revsync data; the demo migrates it first.
    #[arg(long, value_name = "URL", env = "REVSYNC_DEMO_POSTGRES")]
    pub postgres: Option<String>,
    #[command(flatten)]
    pub world: WorldArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Hubspot,
    Salesforce,
    Zendesk,
    Stripe,
    /// The webinar platform the `type: rest` connector is declared against.
    Webinar,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Which system to simulate.
    pub system: System,
    /// Loopback port to serve on (default: any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Where to POST signed webhooks of every change (HubSpot and Stripe simulators), or
    /// of every new registrant (webinar simulator).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Lower the simulated request allowance to N, so a client meets the real limit answer
    /// quickly: HubSpot requests per 10 s, Zendesk per minute, Stripe per second per
    /// endpoint, Salesforce the daily API allocation, webinar per token per minute.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,
    /// Load this system's part of the demo world (`--people 0` for an empty system).
    #[command(flatten)]
    pub world: WorldArgs,
}

/// `revsync demo`.
pub fn demo(args: DemoArgs) -> u8 {
    #[cfg(feature = "demo")]
    {
        run::demo(args)
    }
    #[cfg(not(feature = "demo"))]
    {
        let _ = args;
        not_in_this_build("demo")
    }
}

/// Release builds leave the simulators out; say so instead of failing obscurely.
#[cfg(not(feature = "demo"))]
fn not_in_this_build(command: &str) -> u8 {
    eprintln!(
        "error: `revsync {command}` is not in this build: release builds leave out the simulators; build with `cargo build --features demo` (the default for a source checkout) to get it"
    );
    crate::cli::exit::FAILURE
}

/// `revsync sim`.
pub fn sim(args: SimArgs) -> u8 {
    #[cfg(feature = "demo")]
    {
        run::sim(args)
    }
    #[cfg(not(feature = "demo"))]
    {
        let _ = args;
        not_in_this_build("sim")
    }
}
