;; HTML workload: render an item list as HTML. Every item is formatted by one of four
;; formatter functions, called through `call_indirect` on the item's kind (kind & 3)
;; via the module's static table.
;;
;; Input (little-endian): item count n: u32, then n records of
;;   kind u8, price u32 (cents), old_price u32 (cents),
;;   name_len u8, name bytes, feature1_len u8, feature1 bytes, feature2_len u8, feature2 bytes.
;; Rendering stops early at a record that does not fit in the input, or once the output
;; passes output_ptr + 3 MiB - 8 KiB (one item writes less than 5 KiB), so no input can
;; make it write outside [output_ptr, input_ptr).
;;
;; Memory layout:
;;   0x000800 .. 0x000820  decimal digit scratch
;;   0x001000 .. 0x0016c0  NUL-terminated literals, one per 64-byte slot
;;   0x100000 .. 0x400000  output
;;   0x400000 ..           input
(module
  (type $formatter (func (param i32 i32) (result i32)))
  (memory (export "memory") 68)
  (global (export "input_ptr") i32 (i32.const 0x400000))
  (global (export "output_ptr") i32 (i32.const 0x100000))
  (table 4 4 funcref)
  (elem (i32.const 0) $fmt_plain $fmt_sale $fmt_featured $fmt_compact)

  (data (i32.const 0x1000) "<ul class=\"items\">\n\00")
  (data (i32.const 0x1040) "</ul>\n\00")
  (data (i32.const 0x1080) "<li class=\"item\"><span class=\"name\">\00")
  (data (i32.const 0x10c0) "</span> <span class=\"price\">\00")
  (data (i32.const 0x1100) "</span><ul><li>\00")
  (data (i32.const 0x1140) "</li><li>\00")
  (data (i32.const 0x1180) "</li></ul></li>\n\00")
  (data (i32.const 0x11c0) "<li class=\"item sale\"><span class=\"name\">\00")
  (data (i32.const 0x1200) "</span> <s class=\"old\">\00")
  (data (i32.const 0x1240) "</s> <span class=\"price\">\00")
  (data (i32.const 0x1280) "</span> <em>-\00")
  (data (i32.const 0x12c0) "%</em><ul><li>\00")
  (data (i32.const 0x1300) "<li class=\"item featured\"><strong>\00")
  (data (i32.const 0x1340) "</strong> <span class=\"price\">\00")
  (data (i32.const 0x1380) "</span><p>\00")
  (data (i32.const 0x13c0) " &middot; \00")
  (data (i32.const 0x1400) "</p></li>\n\00")
  (data (i32.const 0x1440) "<li>\00")
  (data (i32.const 0x1480) " - \00")
  (data (i32.const 0x14c0) " (\00")
  (data (i32.const 0x1500) ", \00")
  (data (i32.const 0x1540) ")</li>\n\00")
  (data (i32.const 0x1580) "&amp;\00")
  (data (i32.const 0x15c0) "&lt;\00")
  (data (i32.const 0x1600) "&gt;\00")
  (data (i32.const 0x1640) "&quot;\00")
  (data (i32.const 0x1680) "&#39;\00")

  ;; Copy the NUL-terminated literal at $a to $o; returns the new output position.
  (func $puts (param $o i32) (param $a i32) (result i32)
    (local $c i32)
    (local.set $c (i32.load8_u (local.get $a)))
    (block $done
      (br_if $done (i32.eqz (local.get $c)))
      (loop $copy
        (i32.store8 (local.get $o) (local.get $c))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $c (i32.load8_u (local.get $a)))
        (br_if $copy (local.get $c))))
    (local.get $o))

  ;; Copy $n bytes from $s to $o, escaping & < > " ' as HTML entities.
  (func $esc (param $o i32) (param $s i32) (param $n i32) (result i32)
    (local $end i32)
    (local $c i32)
    (local.set $end (i32.add (local.get $s) (local.get $n)))
    (block $done
      (br_if $done (i32.ge_u (local.get $s) (local.get $end)))
      (loop $chars
        (local.set $c (i32.load8_u (local.get $s)))
        (if (i32.gt_u (local.get $c) (i32.const 62))
          (then
            (i32.store8 (local.get $o) (local.get $c))
            (local.set $o (i32.add (local.get $o) (i32.const 1))))
          (else
            (if (i32.eq (local.get $c) (i32.const 38))
              (then (local.set $o (call $puts (local.get $o) (i32.const 0x1580))))
              (else
                (if (i32.eq (local.get $c) (i32.const 60))
                  (then (local.set $o (call $puts (local.get $o) (i32.const 0x15c0))))
                  (else
                    (if (i32.eq (local.get $c) (i32.const 62))
                      (then (local.set $o (call $puts (local.get $o) (i32.const 0x1600))))
                      (else
                        (if (i32.eq (local.get $c) (i32.const 34))
                          (then (local.set $o (call $puts (local.get $o) (i32.const 0x1640))))
                          (else
                            (if (i32.eq (local.get $c) (i32.const 39))
                              (then (local.set $o (call $puts (local.get $o) (i32.const 0x1680))))
                              (else
                                (i32.store8 (local.get $o) (local.get $c))
                                (local.set $o (i32.add (local.get $o) (i32.const 1)))))))))))))))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br_if $chars (i32.lt_u (local.get $s) (local.get $end)))))
    (local.get $o))

  ;; Write the decimal digits of $v; with $group, a comma between groups of three.
  (func $digits (param $o i32) (param $v i32) (param $group i32) (result i32)
    (local $n i32)
    ;; Least significant digit first into the scratch.
    (loop $split
      (i32.store8 (i32.add (i32.const 0x800) (local.get $n))
        (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $split (local.get $v)))
    (loop $emit
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (i32.store8 (local.get $o) (i32.load8_u (i32.add (i32.const 0x800) (local.get $n))))
      (local.set $o (i32.add (local.get $o) (i32.const 1)))
      (if (i32.and (local.get $group)
            (i32.and (i32.ne (local.get $n) (i32.const 0))
                     (i32.eqz (i32.rem_u (local.get $n) (i32.const 3)))))
        (then
          (i32.store8 (local.get $o) (i32.const 44))
          (local.set $o (i32.add (local.get $o) (i32.const 1)))))
      (br_if $emit (local.get $n)))
    (local.get $o))

  ;; Write a price in cents as $D,DDD.CC.
  (func $price (param $o i32) (param $cents i32) (result i32)
    (local $cc i32)
    (i32.store8 (local.get $o) (i32.const 36))
    (local.set $o (call $digits
      (i32.add (local.get $o) (i32.const 1))
      (i32.div_u (local.get $cents) (i32.const 100))
      (i32.const 1)))
    (local.set $cc (i32.rem_u (local.get $cents) (i32.const 100)))
    (i32.store8 (local.get $o) (i32.const 46))
    (i32.store8 offset=1 (local.get $o) (i32.add (i32.const 48) (i32.div_u (local.get $cc) (i32.const 10))))
    (i32.store8 offset=2 (local.get $o) (i32.add (i32.const 48) (i32.rem_u (local.get $cc) (i32.const 10))))
    (i32.add (local.get $o) (i32.const 3)))

  ;; Field addresses of the item record at $item.
  (func $name (param $item i32) (result i32)
    (i32.add (local.get $item) (i32.const 10)))
  (func $name_len (param $item i32) (result i32)
    (i32.load8_u offset=9 (local.get $item)))
  (func $f1 (param $item i32) (result i32)
    (i32.add (i32.add (call $name (local.get $item)) (call $name_len (local.get $item))) (i32.const 1)))
  (func $f1_len (param $item i32) (result i32)
    (i32.load8_u (i32.sub (call $f1 (local.get $item)) (i32.const 1))))
  (func $f2 (param $item i32) (result i32)
    (i32.add (i32.add (call $f1 (local.get $item)) (call $f1_len (local.get $item))) (i32.const 1)))
  (func $f2_len (param $item i32) (result i32)
    (i32.load8_u (i32.sub (call $f2 (local.get $item)) (i32.const 1))))

  ;; kind 0: name, price, features as a nested list.
  (func $fmt_plain (type $formatter) (param $item i32) (param $o i32) (result i32)
    (local.set $o (call $puts (local.get $o) (i32.const 0x1080)))
    (local.set $o (call $esc (local.get $o) (call $name (local.get $item)) (call $name_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x10c0)))
    (local.set $o (call $price (local.get $o) (i32.load offset=1 (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1100)))
    (local.set $o (call $esc (local.get $o) (call $f1 (local.get $item)) (call $f1_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1140)))
    (local.set $o (call $esc (local.get $o) (call $f2 (local.get $item)) (call $f2_len (local.get $item))))
    (call $puts (local.get $o) (i32.const 0x1180)))

  ;; kind 1: sale: the old price struck through, the new price and the discount.
  (func $fmt_sale (type $formatter) (param $item i32) (param $o i32) (result i32)
    (local $price i32)
    (local $old i32)
    (local $pct i32)
    (local.set $price (i32.load offset=1 (local.get $item)))
    (local.set $old (i32.load offset=5 (local.get $item)))
    (if (i32.gt_u (local.get $old) (local.get $price))
      (then
        (local.set $pct (i32.wrap_i64 (i64.div_u
          (i64.mul (i64.extend_i32_u (i32.sub (local.get $old) (local.get $price))) (i64.const 100))
          (i64.extend_i32_u (local.get $old)))))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x11c0)))
    (local.set $o (call $esc (local.get $o) (call $name (local.get $item)) (call $name_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1200)))
    (local.set $o (call $price (local.get $o) (local.get $old)))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1240)))
    (local.set $o (call $price (local.get $o) (local.get $price)))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1280)))
    (local.set $o (call $digits (local.get $o) (local.get $pct) (i32.const 0)))
    (local.set $o (call $puts (local.get $o) (i32.const 0x12c0)))
    (local.set $o (call $esc (local.get $o) (call $f1 (local.get $item)) (call $f1_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1140)))
    (local.set $o (call $esc (local.get $o) (call $f2 (local.get $item)) (call $f2_len (local.get $item))))
    (call $puts (local.get $o) (i32.const 0x1180)))

  ;; kind 2: featured: the name in <strong>, features in one paragraph.
  (func $fmt_featured (type $formatter) (param $item i32) (param $o i32) (result i32)
    (local.set $o (call $puts (local.get $o) (i32.const 0x1300)))
    (local.set $o (call $esc (local.get $o) (call $name (local.get $item)) (call $name_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1340)))
    (local.set $o (call $price (local.get $o) (i32.load offset=1 (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1380)))
    (local.set $o (call $esc (local.get $o) (call $f1 (local.get $item)) (call $f1_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x13c0)))
    (local.set $o (call $esc (local.get $o) (call $f2 (local.get $item)) (call $f2_len (local.get $item))))
    (call $puts (local.get $o) (i32.const 0x1400)))

  ;; kind 3: compact: one line, no classes.
  (func $fmt_compact (type $formatter) (param $item i32) (param $o i32) (result i32)
    (local.set $o (call $puts (local.get $o) (i32.const 0x1440)))
    (local.set $o (call $esc (local.get $o) (call $name (local.get $item)) (call $name_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1480)))
    (local.set $o (call $price (local.get $o) (i32.load offset=1 (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x14c0)))
    (local.set $o (call $esc (local.get $o) (call $f1 (local.get $item)) (call $f1_len (local.get $item))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1500)))
    (local.set $o (call $esc (local.get $o) (call $f2 (local.get $item)) (call $f2_len (local.get $item))))
    (call $puts (local.get $o) (i32.const 0x1540)))

  (func (export "run") (param $len i32) (result i32)
    (local $o i32)
    (local $p i32)
    (local $end i32)
    (local $n i32)
    (local $i i32)
    (local $size i32)
    (local.set $o (call $puts (i32.const 0x100000) (i32.const 0x1000)))
    (local.set $p (i32.const 0x400004))
    (local.set $end (i32.add (i32.const 0x400000) (local.get $len)))
    (block $stop
      (br_if $stop (i32.lt_u (local.get $len) (i32.const 4)))
      (local.set $n (i32.load (i32.const 0x400000)))
      (br_if $stop (i32.eqz (local.get $n)))
      (loop $items
        (br_if $stop (i32.gt_u (local.get $o) (i32.const 0x3fe000)))
        ;; The record must fit: fixed part, then each length as it is read.
        (local.set $size (i32.const 12))
        (br_if $stop (i32.lt_u (i32.sub (local.get $end) (local.get $p)) (local.get $size)))
        (local.set $size (i32.add (local.get $size) (i32.load8_u offset=9 (local.get $p))))
        (br_if $stop (i32.lt_u (i32.sub (local.get $end) (local.get $p)) (local.get $size)))
        (local.set $size (i32.add (local.get $size)
          (i32.load8_u (i32.add (local.get $p) (i32.sub (local.get $size) (i32.const 2))))))
        (br_if $stop (i32.lt_u (i32.sub (local.get $end) (local.get $p)) (local.get $size)))
        (local.set $size (i32.add (local.get $size)
          (i32.load8_u (i32.add (local.get $p) (i32.sub (local.get $size) (i32.const 1))))))
        (br_if $stop (i32.lt_u (i32.sub (local.get $end) (local.get $p)) (local.get $size)))
        (local.set $o (call_indirect (type $formatter)
          (local.get $p) (local.get $o)
          (i32.and (i32.load8_u (local.get $p)) (i32.const 3))))
        (local.set $p (i32.add (local.get $p) (local.get $size)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $items (i32.lt_u (local.get $i) (local.get $n)))))
    (local.set $o (call $puts (local.get $o) (i32.const 0x1040)))
    (i32.sub (local.get $o) (i32.const 0x100000)))
)
