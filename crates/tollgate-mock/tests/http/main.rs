//! The HTTP front in process: routes, errors, limits and headers per API, and that no body makes
//! it answer anything but a well-formed answer.
#![cfg(feature = "http")]

mod robustness;
mod routes;
mod support;
