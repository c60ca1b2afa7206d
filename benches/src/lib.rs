//! Shared helpers of the benchmarks: reading the TEXMEX data sets of
//! `../shared/data`.
