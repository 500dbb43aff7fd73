#!/usr/bin/env bash
# Builds report/report.pdf from report/report.md, and checks its length.
#
# Needs pandoc, weasyprint and pdfinfo (Debian: `apt-get install -y pandoc
# weasyprint poppler-utils`). The SHA-256 of the Markdown is written into the
# PDF's metadata, so a test can tell whether the committed PDF was built from
# the committed Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."

markdown=report/report.md
pdf=report/report.pdf
max_pages=5
digest=$(sha256sum "$markdown" | cut -d' ' -f1)

pandoc "$markdown" \
    --standalone \
    --from markdown \
    --to html5 \
    --css report/print.css \
    --self-contained \
    --metadata "keywords=source-sha256:$digest" \
    --output report/report.html
weasyprint report/report.html "$pdf"
rm report/report.html

pages=$(pdfinfo "$pdf" | awk '/^Pages:/ { print $2 }')
echo "$pdf: $pages pages (at most $max_pages), built from $markdown sha256 $digest"
if [ "$pages" -gt "$max_pages" ]; then
    echo "error: the report is longer than $max_pages A4 pages" >&2
    exit 1
fi
