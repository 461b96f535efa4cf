"""sandbox/service"""
