"""Customers: create or update (an upsert), suspend and resume (with their wallets), delete one
whose wallets are all Closed, list, read one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from processor.gateway.access import GatewayRoute
from processor.gateway.bodies import CustomerCreateBody, CustomerUpdateBody, Page, ReferenceBody
from processor.gateway.dependencies import READ_RESPONSES, WRITE_RESPONSES, CustomerIdPath, Member, PagingDep
from processor.gateway.dependencies import ProjectIdPath, ReadsDep, Write, found_in_project, page_in_project
from processor.gateway.http_errors import GatewayCode
from schemas.results import CustomerView, Result

router = APIRouter(route_class=GatewayRoute, tags=["Customers"])

# Suspend and resume take no fields: a body, if any, carries only the reference ID.
OptionalReferenceBody = Annotated[ReferenceBody | None, Body()]


@router.put("/projects/{projectId}/customers/{customerId}/resume", response_model=Result, responses=WRITE_RESPONSES, operation_id="resumeCustomer")
async def resume_customer(
    project_id: ProjectIdPath, customer_id: CustomerIdPath, principal: Member, write: Write, body: OptionalReferenceBody = None
) -> JSONResponse:
    """Make a customer Active again; their wallets stay as they are (`customer.resume`)."""
    return await write("customer.resume", path={"project_id": project_id, "customer_id": customer_id}, body=body)


@router.put("/projects/{projectId}/customers/{customerId}", response_model=Result, responses=WRITE_RESPONSES, operation_id="updateCustomer")
async def update_customer(
    project_id: ProjectIdPath, customer_id: CustomerIdPath, body: CustomerUpdateBody, principal: Member, write: Write
) -> JSONResponse:
    """Create or update a customer by its ID (`customer.upsert`)."""
    return await write("customer.upsert", path={"project_id": project_id, "customer_id": customer_id}, body=body)


@router.post("/projects/{projectId}/customers", response_model=Result, responses=WRITE_RESPONSES, operation_id="createCustomer")
async def create_customer(project_id: ProjectIdPath, body: CustomerCreateBody, principal: Member, write: Write) -> JSONResponse:
    """Create a customer, or update the one with this customer_id (`customer.upsert`)."""
    return await write("customer.upsert", path={"project_id": project_id}, body=body)


@router.get("/projects/{projectId}/customers", response_model=Page[CustomerView], responses=READ_RESPONSES, operation_id="listCustomers")
def list_customers(project_id: ProjectIdPath, principal: Member, db: ReadsDep, paging: PagingDep) -> Page:
    """The project's customers, in customer_id order."""
    return page_in_project(db, project_id, db.list_customers(project_id, paging))


@router.delete("/projects/{projectId}/customers/{customerId}", response_model=Result, responses=WRITE_RESPONSES, operation_id="deleteCustomer")
async def delete_customer(project_id: ProjectIdPath, customer_id: CustomerIdPath, principal: Member, write: Write) -> JSONResponse:
    """Delete a customer whose wallets are all Closed (`customer.delete`)."""
    return await write("customer.delete", path={"project_id": project_id, "customer_id": customer_id})


@router.get("/projects/{projectId}/customers/{customerId}", response_model=CustomerView, responses=READ_RESPONSES, operation_id="getCustomer")
def get_customer(project_id: ProjectIdPath, customer_id: CustomerIdPath, principal: Member, db: ReadsDep) -> CustomerView:
    """A customer."""
    return found_in_project(db, project_id, db.get_customer(project_id, customer_id), code=GatewayCode.CustomerNotFound, key=customer_id)


@router.put("/projects/{projectId}/customers/{customerId}/suspend", response_model=Result, responses=WRITE_RESPONSES, operation_id="suspendCustomer")
async def suspend_customer(
    project_id: ProjectIdPath, customer_id: CustomerIdPath, principal: Member, write: Write, body: OptionalReferenceBody = None
) -> JSONResponse:
    """Suspend a customer and every Open wallet of theirs (`customer.suspend`)."""
    return await write("customer.suspend", path={"project_id": project_id, "customer_id": customer_id}, body=body)
