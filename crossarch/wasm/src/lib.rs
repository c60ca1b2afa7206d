//! The golden workload compiled to `wasm32-unknown-unknown` without std.
//! `run.mjs` instantiates the module and prints the report.

#![no_std]

extern crate alloc;

use alloc::string::String;

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// Runs the golden workload; returns the report's address in the high 32
/// bits and its length in the low 32 bits. The report is leaked on purpose:
/// the module is instantiated once per run.
#[unsafe(no_mangle)]
pub extern "C" fn golden_run() -> u64 {
    let mut report = String::new();
    if valori_core::golden::run(&mut report).is_err() {
        return 0;
    }
    let bytes = report.leak().as_bytes();
    ((bytes.as_ptr() as usize as u64) << 32) | bytes.len() as u64
}
