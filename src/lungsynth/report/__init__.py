"""The self-contained HTML report: one module of sections per branch, figures, and the page builder."""
