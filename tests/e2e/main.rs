//! End-to-end tests: the real binary against a stand-in Drone, the
//! CloudWatch emulator and a Lambda Runtime API emulator.

mod cli;
mod lambda;
mod readback;
mod routing;
mod support;
