#!/usr/bin/env bash
# Makes sample slide videos with speech for the analyze step's demo and bench.
#
#   scripts/make-samples.sh OUTDIR [--long SECONDS]
#
# Writes OUTDIR/sample-1.mp4 .. sample-3.mp4 (1280x720, 25 fps, h264 + aac, 15-30 s, 2-3 slides
# of large distinct text, each slide narrated by flite's `slt` voice) and, with --long N, also
# OUTDIR/long-N.mp4: an N-second 720p video with a new slide every 15-25 s and a sentence per
# slide. Existing files are kept (delete them to remake). Needs ffmpeg (libx264, drawtext) and
# flite; the font comes from fonts-dejavu-core.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [--long SECONDS]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1; shift
LONG=0
while [ $# -gt 0 ]; do
  case $1 in
    --long) [ $# -ge 2 ] || usage; LONG=$2; shift 2 ;;
    *) usage ;;
  esac
done
case $LONG in ''|*[!0-9]*) echo "make-samples: --long wants whole seconds, got '$LONG'" >&2; exit 2 ;; esac

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
[ -f "$FONT" ] || { echo "make-samples: $FONT missing (apt-get install fonts-dejavu-core)" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "make-samples: ffmpeg not found" >&2; exit 1; }
command -v flite >/dev/null || { echo "make-samples: flite not found" >&2; exit 1; }
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Dark and light backgrounds alternate so that every slide change is a clear scene change (a luma
# step far above FFmpeg's default scene threshold of 0.3); the text contrasts with its background.
COLORS=(navy khaki darkgreen lightblue maroon wheat indigo lightgreen)
TEXT_COLORS=(white black)

# make_video OUT: slides from the arrays DURS (seconds), TITLES (on screen), SAYS (spoken).
make_video() {
  local out=$1 n=${#DURS[@]} i inputs=() graph="" vcat="" acat=""
  for ((i = 0; i < n; i++)); do
    flite -voice slt -t "${SAYS[$i]}" -o "$TMP/say-$i.wav"
    inputs+=(-i "$TMP/say-$i.wav")
    local color=${COLORS[$((i % ${#COLORS[@]}))]} ink=${TEXT_COLORS[$((i % 2))]}
    graph+="color=c=$color:s=1280x720:r=25:d=${DURS[$i]},"
    graph+="drawtext=fontfile=$FONT:text='${TITLES[$i]}':fontsize=72:fontcolor=$ink:"
    graph+="x=(w-tw)/2:y=(h-th)/2[v$i];"
    # Each sentence starts 0.5 s into its slide and is padded with silence to the slide's end.
    graph+="[$i:a]aresample=44100,adelay=500:all=1,apad=whole_dur=${DURS[$i]},"
    graph+="atrim=0:${DURS[$i]}[a$i];"
    vcat+="[v$i]"; acat+="[a$i]"
  done
  graph+="${vcat}concat=n=$n:v=1:a=0[v];${acat}concat=n=$n:v=0:a=1[a]"
  ffmpeg -nostdin -hide_banner -loglevel error -y "${inputs[@]}" -filter_complex "$graph" \
    -map '[v]' -map '[a]' -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -b:a 64k \
    -movflags +faststart "$TMP/out.mp4"
  mv "$TMP/out.mp4" "$out"
  echo "$out"
}

if [ ! -f "$OUT/sample-1.mp4" ]; then
  DURS=(8 8 8)
  TITLES=("Quarterly Results" "Revenue grew twelve percent" "Next Steps")
  SAYS=("Welcome to the quarterly results meeting."
        "Revenue grew twelve percent this year."
        "Next we will hire more engineers.")
  make_video "$OUT/sample-1.mp4"
fi
if [ ! -f "$OUT/sample-2.mp4" ]; then
  DURS=(10 10)
  TITLES=("Garden Planning" "Plant tomatoes in spring")
  SAYS=("This talk is about garden planning."
        "Plant tomatoes and peppers in the spring.")
  make_video "$OUT/sample-2.mp4"
fi
if [ ! -f "$OUT/sample-3.mp4" ]; then
  DURS=(6 7 7)
  TITLES=("Safety Training" "Wear your helmet" "Report every accident")
  SAYS=("Good morning and welcome to safety training."
        "Always wear your helmet on the site."
        "Please report every accident to your manager.")
  make_video "$OUT/sample-3.mp4"
fi

if [ "$LONG" -gt 0 ] && [ ! -f "$OUT/long-$LONG.mp4" ]; then
  topics=("Quarterly Results" "Revenue Growth" "Customer Support" "Hiring Plan" "Product Roadmap"
          "Safety Training" "Garden Planning" "Market Research" "Budget Review" "Team Updates")
  sentences=("Revenue grew twelve percent this year."
             "Customer support answered every ticket within a day."
             "We plan to hire more engineers next quarter."
             "The product roadmap focuses on reliability."
             "Always wear your helmet on the site."
             "Plant tomatoes and peppers in the spring."
             "Market research shows strong demand in Europe."
             "The budget review found savings in travel."
             "The team shipped three releases this month."
             "Thank you all for your hard work.")
  DURS=(); TITLES=(); SAYS=()
  left=$LONG; k=0
  while [ "$left" -gt 0 ]; do
    d=$((15 + (k * 7) % 11))
    [ "$d" -gt "$left" ] && d=$left
    DURS+=("$d")
    TITLES+=("Part $((k + 1)) - ${topics[$((k % ${#topics[@]}))]}")
    # Two sentences per slide when it is long enough, so speech fills most of the video.
    s="${sentences[$((k % ${#sentences[@]}))]}"
    [ "$d" -ge 12 ] && s="$s ${sentences[$(((k + 3) % ${#sentences[@]}))]}"
    SAYS+=("$s")
    left=$((left - d)); k=$((k + 1))
  done
  make_video "$OUT/long-$LONG.mp4"
fi
