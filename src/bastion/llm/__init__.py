"""bastion.llm"""
