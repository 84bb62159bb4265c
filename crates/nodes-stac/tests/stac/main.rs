//! Tests of flow-nodes-stac against servers and files on loopback / in temp dirs only.

mod api;
mod http;
mod sign;
mod static_search;
mod support;
