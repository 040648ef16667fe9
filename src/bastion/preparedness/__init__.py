"""bastion.preparedness"""
