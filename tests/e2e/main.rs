//! End-to-end tests: the real binary against a stand-in Drone, the
//! CloudWatch emulator and a Lambda Runtime API emulator.

mod cli;
mod daemon;
mod emf;
mod lambda;
mod prometheus;
mod protection;
mod readback;
mod routing;
mod support;
mod token;
