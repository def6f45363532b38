;; Hash workload: h: u64 = 0; for each input byte b: h = h * 31 + b (wrapping).
;; Output: h as 8 little-endian bytes at output_ptr.
;;
;; Memory layout: output at 1 MiB (8 bytes), input at 4 MiB (any length the host's
;; memory holds). Initial memory: 4 MiB + 256 KiB (the default input).
(module
  (memory (export "memory") 68)
  (global (export "input_ptr") i32 (i32.const 0x400000))
  (global (export "output_ptr") i32 (i32.const 0x100000))

  (func (export "run") (param $len i32) (result i32)
    (local $p i32)
    (local $end i32)
    (local $wide_end i32)
    (local $w i64)
    (local $h i64)
    (local.set $p (i32.const 0x400000))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    ;; Main loop: 8 bytes per iteration, one little-endian i64 load, the bytes in order.
    (local.set $wide_end
      (i32.add (local.get $p) (i32.and (local.get $len) (i32.const 0xfffffff8))))
    (block $wide_done
      (br_if $wide_done (i32.ge_u (local.get $p) (local.get $wide_end)))
      (loop $wide
        (local.set $w (i64.load (local.get $p)))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.and (local.get $w) (i64.const 0xff))))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.and (i64.shr_u (local.get $w) (i64.const 8)) (i64.const 0xff))))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.and (i64.shr_u (local.get $w) (i64.const 16)) (i64.const 0xff))))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.and (i64.shr_u (local.get $w) (i64.const 24)) (i64.const 0xff))))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.and (i64.shr_u (local.get $w) (i64.const 32)) (i64.const 0xff))))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.and (i64.shr_u (local.get $w) (i64.const 40)) (i64.const 0xff))))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.and (i64.shr_u (local.get $w) (i64.const 48)) (i64.const 0xff))))
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.shr_u (local.get $w) (i64.const 56))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br_if $wide (i32.lt_u (local.get $p) (local.get $wide_end)))))
    ;; Tail: the last len % 8 bytes, one at a time.
    (block $tail_done
      (br_if $tail_done (i32.ge_u (local.get $p) (local.get $end)))
      (loop $tail
        (local.set $h (i64.add (i64.mul (local.get $h) (i64.const 31))
          (i64.load8_u (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $tail (i32.lt_u (local.get $p) (local.get $end)))))
    (i64.store (i32.const 0x100000) (local.get $h))
    (i32.const 8))
)
