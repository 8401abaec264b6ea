"""Chatbot intent task: MiniLM teacher, distilled student, Bitext data and the compress adapter."""
