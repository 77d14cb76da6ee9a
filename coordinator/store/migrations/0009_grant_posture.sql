-- The postures ("posture:NAME", a JSON list) the access rule that allowed
-- a grant requires of its source, copied at approval: the grant admits
-- its source only while the source satisfies them.
-- Same conventions as 0001; keep this portable SQL.
ALTER TABLE access_requests ADD COLUMN src_posture TEXT NOT NULL DEFAULT '[]';
