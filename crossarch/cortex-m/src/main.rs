//! The golden workload on a Cortex-M4F. Prints the report over semihosting
//! and exits QEMU with status 0; a panic exits with status 1.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use core::mem::MaybeUninit;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
use embedded_alloc::LlffHeap as Heap;
use panic_semihosting as _;

#[global_allocator]
static HEAP: Heap = Heap::empty();

const HEAP_BYTES: usize = 3 * 1024 * 1024;
static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];

#[entry]
fn main() -> ! {
    // SAFETY: HEAP_MEM is used by nothing but the heap, which is initialised
    // once, here, before any allocation.
    unsafe { HEAP.init(&raw mut HEAP_MEM as usize, HEAP_BYTES) }

    let mut report = String::new();
    let status = match valori_core::golden::run(&mut report) {
        Ok(_) => match hio::hstdout() {
            Ok(mut out) => {
                // Semihosting writes are slow per call; send lines in blocks.
                let ok = report
                    .as_bytes()
                    .chunks(1024)
                    .all(|c| out.write_all(c).is_ok());
                if ok {
                    debug::EXIT_SUCCESS
                } else {
                    debug::EXIT_FAILURE
                }
            }
            Err(()) => debug::EXIT_FAILURE,
        },
        Err(_) => debug::EXIT_FAILURE,
    };
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}
