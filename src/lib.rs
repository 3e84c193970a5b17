//! Publishes the depth of a Drone CI queue per runner group, so that
//! autoscaling alarms can act on it.
//!
//! One poll, the same in every mode:
//!
//! 1. [`drone`] reads `GET /api/queue` once. Any failure ends the poll:
//!    an unreadable queue is never published as an empty one.
//! 2. [`routing`] works out which pending stages Drone would start now,
//!    over the whole queue; [`aggregate`] counts them per runner group
//!    ([`grouping`]: the stage's exact label set by default, as Drone routes
//!    by it). Pure.
//! 3. [`metrics`] turns the counts into data points and sets aside groups
//!    whose labels CloudWatch would refuse ([`dimensions`]). Pure.
//! 4. The sinks chosen in [`sinks`] take the plan: [`cloudwatch`] packs the
//!    points into as few `PutMetricData` calls as the limits allow and sends
//!    them; [`emf`] writes them as Embedded Metric Format lines; [`prometheus`]
//!    keeps them for the endpoint ([`endpoint`]); [`report`] prints them.
//!
//! [`poll`] strings these together; [`cli`], [`daemon`] and [`lambda`] are
//! thin entry points around it, and [`config`] reads and checks everything
//! first.

pub mod aggregate;
pub mod asg;
pub mod aws;
pub mod cli;
pub mod cloudwatch;
pub mod config;
pub mod daemon;
pub mod dimensions;
pub mod drone;
pub mod emf;
pub mod endpoint;
pub mod grouping;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod poll;
pub mod prometheus;
pub mod protection;
pub mod report;
pub mod routing;
pub mod secret;
pub mod sinks;
pub mod startup;
