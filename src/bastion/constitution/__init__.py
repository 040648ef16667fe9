"""bastion.constitution"""
