"""bastion.normalize"""
