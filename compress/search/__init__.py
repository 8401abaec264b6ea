"""Search ranking: graded query-product judgments, MiniLM cross-encoder teacher, distilled student."""
