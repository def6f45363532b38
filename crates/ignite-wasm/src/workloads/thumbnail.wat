;; Thumbnail workload: scale a raw RGB image to 200x200 by box filtering.
;;
;; Input: width u32 LE, height u32 LE, then width * height * 3 bytes (RGB, row-major).
;; Output pixel (ox, oy) is the average (integer, rounded down) of the source rectangle
;; x in [ox * w / 200, (ox + 1) * w / 200), y likewise (a rectangle that would be empty,
;; when the source is smaller than 200, is widened to one pixel). Output: 200 * 200 * 3
;; bytes, no header. An input with a zero dimension or fewer pixel bytes than the header
;; announces gives an empty output.
;;
;; Memory layout:
;;   0x000000 .. 0x001000  source column/row bounds per output column/row (4 x 200 u32)
;;   0x100000 .. 0x11d4c0  output (120,000 bytes)
;;   0x400000 ..           input (initial memory holds a 1024x768 image)
(module
  (memory (export "memory") 101)
  (global (export "input_ptr") i32 (i32.const 0x400000))
  (global (export "output_ptr") i32 (i32.const 0x100000))

  ;; Store the source bounds [lo, hi) of output index $i for source size $size at $at.
  (func $bounds (param $at i32) (param $i i32) (param $size i32)
    (local $lo i32)
    (local $hi i32)
    (local.set $lo (i32.wrap_i64 (i64.div_u
      (i64.mul (i64.extend_i32_u (local.get $i)) (i64.extend_i32_u (local.get $size)))
      (i64.const 200))))
    (local.set $hi (i32.wrap_i64 (i64.div_u
      (i64.mul (i64.extend_i32_u (i32.add (local.get $i) (i32.const 1)))
               (i64.extend_i32_u (local.get $size)))
      (i64.const 200))))
    (if (i32.le_u (local.get $hi) (local.get $lo))
      (then (local.set $hi (i32.add (local.get $lo) (i32.const 1)))))
    (i32.store (local.get $at) (local.get $lo))
    (i32.store offset=0x400 (local.get $at) (local.get $hi)))

  (func (export "run") (param $len i32) (result i32)
    (local $w i32)
    (local $h i32)
    (local $i i32)
    (local $o i32)
    (local $ox i32)
    (local $oy i32)
    (local $x0 i32)
    (local $x1 i32)
    (local $y0 i32)
    (local $y1 i32)
    (local $y i32)
    (local $q i32)
    (local $qend i32)
    (local $r i32)
    (local $g i32)
    (local $b i32)
    (local $area i32)
    (if (i32.lt_u (local.get $len) (i32.const 8))
      (then (return (i32.const 0))))
    (local.set $w (i32.load (i32.const 0x400000)))
    (local.set $h (i32.load (i32.const 0x400004)))
    (if (i32.or (i32.eqz (local.get $w)) (i32.eqz (local.get $h)))
      (then (return (i32.const 0))))
    (if (i64.gt_u
          (i64.mul (i64.mul (i64.extend_i32_u (local.get $w)) (i64.extend_i32_u (local.get $h)))
                   (i64.const 3))
          (i64.extend_i32_u (i32.sub (local.get $len) (i32.const 8))))
      (then (return (i32.const 0))))

    ;; Columns at 0x000 (lo) / 0x400 (hi), rows at 0x800 (lo) / 0xc00 (hi).
    (loop $edges
      (call $bounds (i32.shl (local.get $i) (i32.const 2)) (local.get $i) (local.get $w))
      (call $bounds (i32.add (i32.const 0x800) (i32.shl (local.get $i) (i32.const 2)))
        (local.get $i) (local.get $h))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $edges (i32.lt_u (local.get $i) (i32.const 200))))

    (local.set $o (i32.const 0x100000))
    (loop $rows
      (local.set $y0 (i32.load offset=0x800 (i32.shl (local.get $oy) (i32.const 2))))
      (local.set $y1 (i32.load offset=0xc00 (i32.shl (local.get $oy) (i32.const 2))))
      (local.set $ox (i32.const 0))
      (loop $cols
        (local.set $x0 (i32.load (i32.shl (local.get $ox) (i32.const 2))))
        (local.set $x1 (i32.load offset=0x400 (i32.shl (local.get $ox) (i32.const 2))))
        (local.set $r (i32.const 0))
        (local.set $g (i32.const 0))
        (local.set $b (i32.const 0))
        (local.set $y (local.get $y0))
        (loop $src_rows
          (local.set $q (i32.add (i32.const 0x400008)
            (i32.mul (i32.add (i32.mul (local.get $y) (local.get $w)) (local.get $x0)) (i32.const 3))))
          (local.set $qend (i32.add (local.get $q)
            (i32.mul (i32.sub (local.get $x1) (local.get $x0)) (i32.const 3))))
          (loop $src_px
            (local.set $r (i32.add (local.get $r) (i32.load8_u (local.get $q))))
            (local.set $g (i32.add (local.get $g) (i32.load8_u offset=1 (local.get $q))))
            (local.set $b (i32.add (local.get $b) (i32.load8_u offset=2 (local.get $q))))
            (local.set $q (i32.add (local.get $q) (i32.const 3)))
            (br_if $src_px (i32.lt_u (local.get $q) (local.get $qend))))
          (local.set $y (i32.add (local.get $y) (i32.const 1)))
          (br_if $src_rows (i32.lt_u (local.get $y) (local.get $y1))))
        (local.set $area (i32.mul (i32.sub (local.get $x1) (local.get $x0))
                                  (i32.sub (local.get $y1) (local.get $y0))))
        (i32.store8 (local.get $o) (i32.div_u (local.get $r) (local.get $area)))
        (i32.store8 offset=1 (local.get $o) (i32.div_u (local.get $g) (local.get $area)))
        (i32.store8 offset=2 (local.get $o) (i32.div_u (local.get $b) (local.get $area)))
        (local.set $o (i32.add (local.get $o) (i32.const 3)))
        (local.set $ox (i32.add (local.get $ox) (i32.const 1)))
        (br_if $cols (i32.lt_u (local.get $ox) (i32.const 200))))
      (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $oy) (i32.const 200))))
    (i32.const 120000))
)
