//! Consul's `?filter=` expressions (go-bexpr syntax), parsed once and evaluated against the
//! JSON shape of each result item.
