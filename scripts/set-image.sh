#!/usr/bin/env bash
# Set the nodetap container image once for every manifest under daemonset/.
#
#   scripts/set-image.sh registry.example.com/platform/nodetap:0.2.0
#   scripts/set-image.sh --check          # print the image each kustomization sets
#
# Why a script: every folder that is rendered on its own (daemonset/, base/, the production
# overlay, replay/, replay-agent/) needs its own kustomize `images:` entry, because kubectl
# 1.20's kustomize (which the Kubernetes lab uses) has no components to share one. This
# rewrites the `nodetap` entry of each of them, so the name and tag are given once. The lab
# overlays (lab, lab-replay) keep their locally built `nodetap:dev` unless --lab is given.
set -euo pipefail

usage() {
    echo "usage: scripts/set-image.sh [--lab] [--dir DAEMONSET_DIR] NAME[:TAG] | --check" >&2
    exit 2
}

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/daemonset"
lab=0
check=0
image=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --lab) lab=1 ;;
    --check) check=1 ;;
    --dir)
        [[ $# -ge 2 ]] || usage
        dir="$2"
        shift
        ;;
    -h | --help) usage ;;
    -*) echo "set-image: unknown option $1; see --help" >&2 && exit 2 ;;
    *)
        [[ -z "$image" ]] || usage
        image="$1"
        ;;
    esac
    shift
done
[[ -d "$dir" ]] || { echo "set-image: no folder $dir; give --dir the daemonset/ folder" >&2 && exit 2; }

# every kustomization with an `images:` list
mapfile -t files < <(grep -rl --include=kustomization.yaml -E '^images:' "$dir" | sort)
[[ -f "$dir/base/kustomization.yaml" ]] || { echo "set-image: $dir has no base/kustomization.yaml; give --dir the daemonset/ folder" >&2 && exit 2; }

# The entry to rewrite is named `nodetap` (the name in the raw manifests) or, in overlays
# built on base/, the name base/ gives it (overlays transform after their bases).
current() { # the newName:newTag of the nodetap entry in $1 ($2: base's current name)
    awk -v old="$2" '/^  - name: / {on=($3 == "nodetap" || $3 == old); next}
         on && /^    newName:/ {n=$2} on && /^    newTag:/ {t=$2; gsub(/"/, "", t)} END {print n ":" t}' "$1"
}
old="$(current "$dir/base/kustomization.yaml" "")"
old="${old%:*}"

if [[ $check -eq 1 ]]; then
    for f in "${files[@]}"; do printf '%s\t%s\n' "${f#"$dir"/}" "$(current "$f" "$old")"; done
    exit 0
fi
[[ -n "$image" ]] || usage

# NAME[:TAG]: a tag is what follows the last colon after the last slash (a registry port
# such as host:5000/nodetap is part of the name)
name="$image"
tag=""
last="${image##*/}"
if [[ "$last" == *:* ]]; then
    tag="${last##*:}"
    name="${image%:*}"
fi
if [[ -z "$tag" ]]; then
    tag="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n1)"
fi
ref_re='^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$'
tag_re='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
[[ "$name" =~ $ref_re ]] || { echo "set-image: '$name' is not an image name (lowercase, like registry.example.com/team/nodetap)" >&2 && exit 2; }
[[ "$tag" =~ $tag_re ]] || { echo "set-image: '$tag' is not an image tag (letters, digits, '_', '.', '-')" >&2 && exit 2; }

for f in "${files[@]}"; do
    rel="${f#"$dir"/}"
    keep=0 # the lab overlay keeps its local image, renamed from whatever base now sets
    [[ $lab -eq 0 && ( "$rel" == overlays/lab/* || "$rel" == overlays/lab-replay/* ) ]] && keep=1
    overlay=0
    [[ "$rel" == overlays/* ]] && overlay=1
    was="$(current "$f" "$old")"
    tmp="$(mktemp "$f.XXXXXX")"
    awk -v n="$name" -v t="$tag" -v old="$old" -v keep=$keep -v overlay=$overlay '
        /^  - name: / {
            on = ($3 == "nodetap" || $3 == old)
            if (on && overlay) { print "  - name: " n; next }
        }
        on && !keep && /^    newName:/ {print "    newName: " n; next}
        on && !keep && /^    newTag:/ {print "    newTag: \"" t "\""; next}
        {print}' "$f" >"$tmp"
    chmod --reference="$f" "$tmp"
    mv "$tmp" "$f"
    if [[ $keep -eq 1 ]]; then
        echo "kept   $rel ($was, the locally built lab image; --lab to change it)"
    else
        echo "set    $rel ($name:$tag)"
    fi
done
