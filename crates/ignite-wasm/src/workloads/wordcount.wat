;; WordCount workload: count the words of a text (words = maximal runs of ASCII letters,
;; case-folded to lower case) in an open-addressing hash table in linear memory.
;;
;; Output (32 bytes, little-endian u64s at output_ptr): total words, distinct words,
;; sum over distinct words of fnv1a64(word) * count (wrapping), xor over distinct words
;; of fnv1a64(word) rotated left by count % 64.
;;
;; Memory layout:
;;   0x000000 .. 0x0FFFFC  distinct list: one u32 slot address per distinct word, in
;;                         first-occurrence order (at most 262,143 entries)
;;   0x100000 .. 0x100020  output (32 bytes)
;;   0x100100              dirty flag (u32): 1 while a run is in progress; a run that
;;                         finds it set clears the whole table first
;;   0x200000 .. 0x400000  table: 2^18 slots of 8 bytes [word address u32][count u32],
;;                         linear probing on the folded fnv1a64 hash; address 0 = empty
;;   0x400000 ..           input
;; Every run leaves the table empty again (the slots it used are cleared while the
;; output is computed). A new distinct word beyond the 262,143rd is counted in the total
;; but not stored (the table keeps one empty slot, so probing always ends): inputs of at
;; most 524,286 bytes (512 KiB - 2) can never reach that bound.
(module
  (memory (export "memory") 72)
  (global (export "input_ptr") i32 (i32.const 0x400000))
  (global (export "output_ptr") i32 (i32.const 0x100000))

  ;; 1 if the byte is an ASCII letter.
  (func $is_letter (param $c i32) (result i32)
    (i32.lt_u (i32.sub (i32.or (local.get $c) (i32.const 0x20)) (i32.const 97)) (i32.const 26)))

  ;; 1 if the stored word at $a (a maximal letter run in the input, before $b) equals the
  ;; word of $n >= 1 letters at $b, ignoring case. A match of the first $n bytes means
  ;; the stored word has at least $n letters and ends before $b, so $a + $n is readable.
  (func $same_word (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (loop $cmp
      (if (i32.ne
            (i32.or (i32.load8_u (i32.add (local.get $a) (local.get $i))) (i32.const 0x20))
            (i32.or (i32.load8_u (i32.add (local.get $b) (local.get $i))) (i32.const 0x20)))
        (then (return (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $cmp (i32.lt_u (local.get $i) (local.get $n))))
    (i32.eqz (call $is_letter (i32.load8_u (i32.add (local.get $a) (local.get $n))))))

  ;; fnv1a64 of the case-folded word starting at $p (a letter), ending at $end at most.
  (func $word_hash (param $p i32) (param $end i32) (result i64)
    (local $h i64)
    (local $c i32)
    (local.set $h (i64.const 0xcbf29ce484222325))
    (local.set $c (i32.load8_u (local.get $p)))
    (loop $letters
      (local.set $h (i64.mul
        (i64.xor (local.get $h) (i64.extend_i32_u (i32.or (local.get $c) (i32.const 0x20))))
        (i64.const 0x100000001b3)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $c
        (if (result i32) (i32.lt_u (local.get $p) (local.get $end))
          (then (i32.load8_u (local.get $p)))
          (else (i32.const 0))))
      (br_if $letters (call $is_letter (local.get $c))))
    (local.get $h))

  (func (export "run") (param $len i32) (result i32)
    (local $p i32)
    (local $end i32)
    (local $c i32)
    (local $start i32)
    (local $wlen i32)
    (local $h i64)
    (local $idx i32)
    (local $slot i32)
    (local $sp i32)
    (local $total i32)
    (local $distinct i32)
    (local $i i32)
    (local $count i32)
    (local $sum i64)
    (local $mix i64)

    ;; A run that did not finish left slots behind: clear the whole table.
    (if (i32.load (i32.const 0x100100))
      (then
        (local.set $p (i32.const 0x200000))
        (loop $clear
          (i64.store (local.get $p) (i64.const 0))
          (i64.store offset=8 (local.get $p) (i64.const 0))
          (i64.store offset=16 (local.get $p) (i64.const 0))
          (i64.store offset=24 (local.get $p) (i64.const 0))
          (local.set $p (i32.add (local.get $p) (i32.const 32)))
          (br_if $clear (i32.lt_u (local.get $p) (i32.const 0x400000))))))
    (i32.store (i32.const 0x100100) (i32.const 1))

    (local.set $p (i32.const 0x400000))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (block $done
      (loop $words
        ;; Skip separators; $c is the word's first letter, $p one past it.
        (loop $skip
          (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
          (local.set $c (i32.load8_u (local.get $p)))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br_if $skip (i32.ge_u
            (i32.sub (i32.or (local.get $c) (i32.const 0x20)) (i32.const 97)) (i32.const 26))))
        (local.set $start (i32.sub (local.get $p) (i32.const 1)))
        ;; Hash the word (fnv1a64 over lower-case letters); $p ends one past the byte
        ;; that ended it (a separator, or the end of the input).
        (local.set $h (i64.const 0xcbf29ce484222325))
        (loop $letters
          (local.set $h (i64.mul
            (i64.xor (local.get $h) (i64.extend_i32_u (i32.or (local.get $c) (i32.const 0x20))))
            (i64.const 0x100000001b3)))
          (local.set $c
            (if (result i32) (i32.lt_u (local.get $p) (local.get $end))
              (then (i32.load8_u (local.get $p)))
              (else (i32.const 0))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br_if $letters (i32.lt_u
            (i32.sub (i32.or (local.get $c) (i32.const 0x20)) (i32.const 97)) (i32.const 26))))
        (local.set $wlen (i32.sub (i32.sub (local.get $p) (i32.const 1)) (local.get $start)))
        (local.set $total (i32.add (local.get $total) (i32.const 1)))
        ;; Probe: stop at an empty slot or at the slot holding this word.
        (local.set $idx (i32.and
          (i32.xor (i32.wrap_i64 (local.get $h))
                   (i32.wrap_i64 (i64.shr_u (local.get $h) (i64.const 32))))
          (i32.const 0x3ffff)))
        (loop $probe
          (local.set $slot (i32.add (i32.const 0x200000) (i32.shl (local.get $idx) (i32.const 3))))
          (local.set $sp (i32.load (local.get $slot)))
          (local.set $idx (i32.and (i32.add (local.get $idx) (i32.const 1)) (i32.const 0x3ffff)))
          (br_if $probe
            (if (result i32) (local.get $sp)
              (then (i32.eqz (call $same_word (local.get $sp) (local.get $start) (local.get $wlen))))
              (else (i32.const 0)))))
        (if (local.get $sp)
          (then
            (i32.store offset=4 (local.get $slot)
              (i32.add (i32.load offset=4 (local.get $slot)) (i32.const 1))))
          (else
            (if (i32.lt_u (local.get $distinct) (i32.const 262143))
              (then
                (i32.store (i32.shl (local.get $distinct) (i32.const 2)) (local.get $slot))
                (i32.store (local.get $slot) (local.get $start))
                (i32.store offset=4 (local.get $slot) (i32.const 1))
                (local.set $distinct (i32.add (local.get $distinct) (i32.const 1)))))))
        (br_if $words (i32.lt_u (local.get $p) (local.get $end)))))

    ;; Fold the distinct words into the output, emptying their slots.
    (block $emitted
      (br_if $emitted (i32.eqz (local.get $distinct)))
      (loop $emit
        (local.set $slot (i32.load (i32.shl (local.get $i) (i32.const 2))))
        (local.set $count (i32.load offset=4 (local.get $slot)))
        (local.set $h (call $word_hash (i32.load (local.get $slot)) (local.get $end)))
        (i64.store (local.get $slot) (i64.const 0))
        (local.set $sum (i64.add (local.get $sum)
          (i64.mul (local.get $h) (i64.extend_i32_u (local.get $count)))))
        (local.set $mix (i64.xor (local.get $mix)
          (i64.rotl (local.get $h) (i64.extend_i32_u (local.get $count)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $emit (i32.lt_u (local.get $i) (local.get $distinct)))))

    (i64.store (i32.const 0x100000) (i64.extend_i32_u (local.get $total)))
    (i64.store (i32.const 0x100008) (i64.extend_i32_u (local.get $distinct)))
    (i64.store (i32.const 0x100010) (local.get $sum))
    (i64.store (i32.const 0x100018) (local.get $mix))
    (i32.store (i32.const 0x100100) (i32.const 0))
    (i32.const 32))
)
