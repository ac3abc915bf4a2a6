"""The study's report: the self-contained HTML page (`html`), its items and captions (`items`),
and the headless-Chromium check of a rendered page (`browser`). It reads only the analysis'
outputs (tables, figures) and the provenance in the results tree."""
