-- PHONE campaigns (services/campaigns.py, docs/campaigns.md): what a run plays and
-- the second message of a number in an SMS,PHONE campaign.

-- The uploaded audio (services/speech audio id) the current run plays instead
-- of speaking run_message; NULL: the message is spoken (text-to-speech).
ALTER TABLE campaigns ADD COLUMN run_audio TEXT;
-- SMS,PHONE: each number gets the call (message_id) and a text (sms_message_id);
-- the number is final once both are.
ALTER TABLE campaign_numbers ADD COLUMN sms_message_id BIGINT;
