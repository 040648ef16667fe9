"""bastion.codeshield"""
