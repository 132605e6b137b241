#!/usr/bin/env bash
# `kiln run --image` rejects bad images and options with one `kiln: error:`
# line naming the file, a non-zero exit, no crash and no CSV (nor its
# temporary file) left behind: empty, non-image, truncated and corrupt PNG
# and JPEG files (libpng/libjpeg must neither abort nor print), an image
# too large to decode, missing files and folders, a folder with one bad
# image among good ones, bad option values, bad labels files.  Then a good
# folder run writes exactly the expected CSV.  Needs no Python: the inputs
# are cut from the fuzz seeds in tests/fuzz/corpus/image/.
# usage: run_image_bad_input.sh KILN SOURCE_DIR WORK_DIR
set -uo pipefail
kiln=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work/out" "$work/empty" "$work/mixed" "$work/good"
model="$src/models/resnet8_cifar.onnx"
seeds="$src/tests/fuzz/corpus/image"
: > "$work/empty.png"
echo "just some text" > "$work/text.png"
head -c 100 "$seeds/rgb.png" > "$work/trunc.png"
size=$(stat -c %s "$seeds/rgb.png")
head -c $((size - 12)) "$seeds/rgb.png" > "$work/no_iend.png"                   # cut before IEND
cp "$seeds/rgb.png" "$work/bad_crc.png"
printf '\x00\x00\x00\x00' | dd of="$work/bad_crc.png" bs=1 seek=60 conv=notrunc 2>/dev/null  # inside IDAT
head -c 400 "$seeds/rgb.jpg" > "$work/trunc.jpg"
head -c 20 "$seeds/rgb.jpg" > "$work/header.jpg"
# A valid PNG signature, IHDR (CRC included) declaring 100000 x 100000, empty IDAT.
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00\x27\x30\x9c\x9f\x00\x00\x00\x00IDAT\x35\xaf\x06\x1e' > "$work/huge.png"
cp "$seeds/rgb.png" "$work/mixed/b_good.png" && cp "$work/trunc.jpg" "$work/mixed/a_bad.jpg"
cp "$seeds/rgb.png" "$seeds/gray.jpg" "$seeds/rgb16.png" "$work/good/"
mkdir -p "$work/evil" && cp "$work/trunc.jpg" "$work/evil/$(printf 'a\nb\033[31m.jpg')"   # a name that would break the line
printf '0,cat\nbird\n' > "$work/mixed_labels.txt"
printf '0,cat\n0,dog\n' > "$work/twice_labels.txt"
pass=0 fail=0
expect_error() { # description, pattern, args...
  local what=$1 pat=$2; shift 2
  "$kiln" run --csv "$work/out/p.csv" "$@" > "$work/stdout" 2> "$work/stderr"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l < "$work/stderr")" -eq 1 ] &&
     grep -q "^kiln: error: .*$pat" "$work/stderr"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $what (rc $rc): $(cat "$work/stderr")"
  fi
}
expect_error "empty file" "empty.png: file is empty" "$model" --image "$work/empty.png"
expect_error "not an image" "text.png: not a PNG or JPEG image" "$model" --image "$work/text.png"
expect_error "truncated PNG" "trunc.png: corrupt or truncated PNG" "$model" --image "$work/trunc.png"
expect_error "PNG without IEND" "no_iend.png: corrupt or truncated PNG" "$model" --image "$work/no_iend.png"
expect_error "PNG bad CRC" "bad_crc.png: corrupt or truncated PNG" "$model" --image "$work/bad_crc.png"
expect_error "truncated JPEG" "trunc.jpg: corrupt or truncated JPEG" "$model" --image "$work/trunc.jpg"
expect_error "JPEG header only" "header.jpg: corrupt or truncated JPEG" "$model" --image "$work/header.jpg"
expect_error "huge PNG" "huge.png: PNG is 100000x100000 pixels" "$model" --image "$work/huge.png"
expect_error "missing image" "nope.png: cannot open" "$model" --image "$work/nope.png"
expect_error "empty folder" "folder holds no .png" "$model" --image "$work/empty"
expect_error "bad image in a folder" "a_bad.jpg: corrupt or truncated JPEG" "$model" --image "$work/mixed"
expect_error "control characters in a file name" 'evil/a\\x0ab\\x1b\[31m.jpg: corrupt' "$model" --image "$work/evil"
expect_error "bad --resize" "resize must be exact or shorter" "$model" --image "$seeds/rgb.png" --resize fit
expect_error "bad --channels" "channels must be rgb or bgr" "$model" --image "$seeds/rgb.png" --channels rgba
expect_error "bad --layout" "layout must be nchw or nhwc" "$model" --image "$seeds/rgb.png" --layout chw
expect_error "bad --mean" "mean must be three numbers" "$model" --image "$seeds/rgb.png" --mean 1,2
expect_error "bad --std" "std must be three non-zero numbers" "$model" --image "$seeds/rgb.png" --std 0,1,1
expect_error "bad --scale" "scale must be a number" "$model" --image "$seeds/rgb.png" --scale 1/0
expect_error "bad --crop" "crop must be center" "$model" --image "$seeds/rgb.png" --crop top
expect_error "bad --size" "size must be HxW" "$model" --image "$seeds/rgb.png" --size 32
expect_error "bad --batch-size" "batch-size must be a positive integer" "$model" --image "$seeds/rgb.png" --batch-size 0
expect_error "static batch" "batch size is fixed at 1, not --batch-size 4" "$model" --image "$seeds/rgb.png" --batch-size 4
expect_error "wrong --size" "--size 64x64 does not match" "$model" --image "$seeds/rgb.png" --size 64x64
expect_error "wrong layout" "NHWC layout needs 3 channels" "$model" --image "$seeds/rgb.png" --layout nhwc
expect_error "mixed labels" "mixed_labels.txt: line 2 is not INDEX,NAME" "$model" --image "$seeds/rgb.png" --labels "$work/mixed_labels.txt"
expect_error "labels twice" "twice_labels.txt: line 2: class 0 is named twice" "$model" --image "$seeds/rgb.png" --labels "$work/twice_labels.txt"
expect_error "missing labels" "nope.txt: cannot open" "$model" --image "$seeds/rgb.png" --labels "$work/nope.txt"
expect_error "CSV folder missing" "nope/p.csv: folder does not exist" "$model" --image "$seeds/rgb.png" --csv "$work/nope/p.csv"
[ -z "$(ls -A "$work/out")" ] || { fail=$((fail + 1)); echo "FAIL: a failed run left files behind: $(ls -A "$work/out")"; }
# A good folder run: three rows in name order, then nothing else in out/.
if "$kiln" run "$model" --image "$work/good" --csv "$work/out/p.csv" > /dev/null 2> "$work/stderr" &&
   [ "$(ls -A "$work/out")" = "p.csv" ] && [ "$(wc -l < "$work/out/p.csv")" -eq 4 ] &&
   [ "$(cut -d, -f1 "$work/out/p.csv" | tr '\n' ' ')" = "file \"$work/good/gray.jpg\" \"$work/good/rgb.png\" \"$work/good/rgb16.png\" " ] &&
   grep -q "3/3 images" "$work/stderr"; then
  pass=$((pass + 1))
else
  fail=$((fail + 1)); echo "FAIL good folder run: $(ls -A "$work/out"); $(cat "$work/out/p.csv" 2>&1); $(cat "$work/stderr")"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
