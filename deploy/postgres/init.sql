-- Each service owns its database (SPEC §2): created once, when the volume is new.
CREATE DATABASE crm;
CREATE DATABASE inventory;
CREATE DATABASE integration;
