//! A webinar platform on loopback (feature `sim`): webinars, registrants, attendance.
